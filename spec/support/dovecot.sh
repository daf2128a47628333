#!/bin/bash
# A private Dovecot LMTP server (Debian's dovecot-lmtpd) for the specs,
# separate from any system instance.
#
#   spec/support/dovecot.sh start DIR PORT   # (re)build DIR, start, wait for the banner
#   spec/support/dovecot.sh stop DIR         # stop and wait for its master to exit
#
# DIR holds everything: dovecot.conf, the users file, run/ (base_dir), the
# log dovecot.log, and the mailboxes mail/<user>/Maildir. LMTP listens on
# 127.0.0.1:PORT and on the Unix socket DIR/lmtp.sock; nothing else is
# served (no IMAP, no POP3, no TLS). The users are alice and bob (any
# domain: the lookup uses the local part); any other recipient is refused
# with 550 5.1.1 at RCPT. Needs root (Dovecot's master and its users).
set -euo pipefail
PATH=$PATH:/usr/sbin

die() {
    echo "dovecot.sh: $*" >&2
    exit 1
}

usage() {
    die "usage: $0 start DIR PORT | stop DIR"
}

write_config() {
    local dir=$1 port=$2 uid gid user
    uid=$(id -u nobody)
    gid=$(id -g nobody)
    : > "$dir/users"
    for user in alice bob; do
        echo "$user:{PLAIN}unused:$uid:$gid::$dir/mail/$user::" >> "$dir/users"
    done
    cat > "$dir/dovecot.conf" <<EOF
# Written by spec/support/dovecot.sh; edits are lost on the next start.
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
instance_name = dovecot-spec-$port
protocols = lmtp
listen = 127.0.0.1
ssl = no
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
first_valid_uid = $uid
last_valid_uid = $uid
postmaster_address = postmaster@example.test
auth_username_format = %n
passdb {
  driver = passwd-file
  args = $dir/users
}
userdb {
  driver = passwd-file
  args = $dir/users
}
service lmtp {
  unix_listener $dir/lmtp.sock {
    mode = 0666
  }
  inet_listener lmtp {
    address = 127.0.0.1
    port = $port
  }
}
EOF
}

stop_instance() {
    local dir=$1 pid i
    [[ -f $dir/run/master.pid ]] || return 0
    pid=$(tr -d ' \n' < "$dir/run/master.pid")
    kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" || die "cannot signal master $pid of $dir"
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    die "master $pid of $dir still running 10 s after stop"
}

# Read the banner, so that "started" means "accepting mail".
await_banner() {
    local port=$1 banner i
    for ((i = 0; i < 50; i++)); do
        if exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
            read -r -t 10 banner <&3 || banner=
            printf 'QUIT\r\n' >&3
            exec 3>&-
            [[ $banner == 220* ]] && return 0
        fi
        sleep 0.1
    done
    return 1
}

start_instance() {
    local dir=$1 port=$2
    stop_instance "$dir"
    rm -rf "$dir/run" "$dir/state" "$dir/mail" "$dir/dovecot.log"
    chmod 755 "$dir"
    mkdir -p "$dir/run" "$dir/state" "$dir/mail"
    chown nobody:"$(id -gn nobody)" "$dir/mail"
    write_config "$dir" "$port"
    dovecot -c "$dir/dovecot.conf" || die "dovecot -c $dir/dovecot.conf failed; $dir/dovecot.log:
$(tail -n 20 "$dir/dovecot.log" 2>/dev/null)"
    await_banner "$port" || die "no 220 banner on 127.0.0.1:$port; see $dir/dovecot.log:
$(tail -n 20 "$dir/dovecot.log" 2>/dev/null)"
}

[[ $# -ge 2 ]] || usage
[[ $EUID -eq 0 ]] || die "must run as root (Dovecot's master needs it)"
case $1 in
    start)
        [[ $# -eq 3 && $3 =~ ^[0-9]+$ ]] || usage
        command -v dovecot >/dev/null || die "dovecot is not installed (apt-get install dovecot-lmtpd)"
        mkdir -p "$2"
        start_instance "$(cd "$2" && pwd)" "$3"
        ;;
    stop)
        [[ $# -eq 2 ]] || usage
        [[ -d $2 ]] || exit 0
        stop_instance "$(cd "$2" && pwd)"
        ;;
    *) usage ;;
esac
