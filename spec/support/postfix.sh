#!/bin/bash
# A private Postfix instance for the specs, separate from the system one.
#
#   spec/support/postfix.sh start DIR PORT   # (re)build DIR, start, wait for the banner
#   spec/support/postfix.sh stop DIR         # stop and wait for its master to exit
#
# DIR holds everything: main.cf, master.cf, queue/, data/, maillog, the
# certificates certs/ (made by certs.sh, see there), and the mailbox
# mail/inbox/ (a Maildir) that gets every message for any address
# @example.test or @localhost. Nothing leaves the machine: other domains are
# refused as relaying, and bounces to them fail at once. "start" wipes the
# queue and mailbox of an earlier run. Needs root.
#
# smtpd listens on 127.0.0.1, and on [::1] where the loopback has IPv6, on
# these ports (spec/support/server.lua's postfix().ports has the same names):
#   PORT    plain      plaintext, no STARTTLS offered
#   PORT+1  starttls   STARTTLS offered (certs/server.pem, signed by certs/ca.pem)
#   PORT+2  implicit   TLS from the first byte (server.pem)
#   PORT+3  tls12      STARTTLS offered, TLS 1.2 only (server.pem)
#   PORT+4  clientcert implicit TLS; the client must present a certificate
#                      signed by certs/ca.pem (such as certs/client.pem)
#   PORT+5  expired    implicit TLS with certs/expired.pem
#   PORT+6  wrongname  implicit TLS with certs/wrongname.pem (wrong.example.test)
#   PORT+7  selfsigned implicit TLS with certs/selfsigned.pem
#   PORT+8  otherca    implicit TLS with certs/otherca-server.pem (another CA)
#   PORT+9  plainauth  plaintext, no STARTTLS, AUTH offered (auth.allow_insecure)
#   PORT+10 sizelimit  plaintext, no STARTTLS; message_size_limit = 100000, so
#                      EHLO offers "SIZE 100000"
# Mail that came over TLS gets "(using TLSv1.x with cipher ...)" in its
# Received header.
#
# AUTH (SMTP AUTH through Cyrus SASL) is offered on starttls (after STARTTLS
# only), implicit and plainauth, with PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1
# SCRAM-SHA-256 NTLM (all in Debian's libsasl2-modules). DIR/sasl holds
# smtpd.conf (Postfix's cyrus_sasl_config_path points there) and the sasldb
# with these users, in the realm example.test (smtpd_sasl_local_domain, so
# "alice" and "alice@example.test" are the same user; server.lua's
# postfix().users has the same names):
#   alice  alice-secret-pw   ASCII password
#   bob    pässwörd          UTF-8 password (NFC: SASLprep leaves it as is)
# For NTLM give the domain in upper case (EXAMPLE): Cyrus upper-cases the
# one it hashes. A message sent by an authenticated client names the user in
# its Received header ("Authenticated sender: alice"). Authenticated or not,
# a client may send only to @example.test and @localhost: nothing relays.
set -euo pipefail
PATH=$PATH:/usr/sbin
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() {
    echo "postfix.sh: $*" >&2
    exit 1
}

usage() {
    die "usage: $0 start DIR PORT | stop DIR"
}

loopbacks() {
    echo 127.0.0.1
    if grep -qs '^0\{31\}1 .* lo$' /proc/net/if_inet6; then
        echo '[::1]'
    fi
}

# One smtpd listener per loopback address. Extra arguments are master.cf
# "-o name=value" overrides (values without spaces: main.cf parameters such
# as $test_certs carry the paths).
smtpd_service() {
    local port=$1 address
    shift
    for address in $(loopbacks); do
        echo "$address:$port inet n - n - - smtpd $*"
    done
}

write_main_cf() {
    local dir=$1 interfaces protocols
    interfaces=$(loopbacks | paste -sd, - | sed 's/,/, /g')
    protocols=ipv4
    [[ $interfaces == *::1* ]] && protocols="ipv4, ipv6"
    cat > "$dir/main.cf" <<EOF
# Written by spec/support/postfix.sh; edits are lost on the next start.
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
maillog_file = $dir/maillog
maillog_file_prefixes = $dir

myhostname = mx.example.test
mydomain = example.test
myorigin = example.test
mydestination =
inet_interfaces = $interfaces
inet_protocols = $protocols
smtpd_banner = \$myhostname ESMTP Postfix (test instance)

# No name service: containers and CI may have no resolver at all.
smtpd_peername_lookup = no
smtp_host_lookup = native
smtp_dns_support_level = disabled

# Tests provoke errors on purpose; don't slow them down for it.
smtpd_error_sleep_time = 0s
smtpd_soft_error_limit = 1000

smtpd_relay_restrictions = reject_unauth_destination

# SASL: Cyrus with the sasldb in DIR/sasl (see write_sasl), enabled only on
# the ports whose master.cf entry says so; over TLS only, but on plainauth.
smtpd_sasl_auth_enable = no
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = $dir/sasl
smtpd_sasl_local_domain = example.test
smtpd_sasl_security_options = noanonymous
smtpd_sasl_authenticated_header = yes
smtpd_tls_auth_only = yes

# TLS: offered only on the ports whose master.cf entry sets a security
# level (none here, so the plain port stays plaintext); see the port map.
test_certs = $dir/certs
smtpd_tls_security_level = none
smtpd_tls_chain_files = \$test_certs/server.key, \$test_certs/server.pem
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
tls_random_source = dev:/dev/urandom
test_tls12_only = >=TLSv1.2, <=TLSv1.2
virtual_mailbox_domains = example.test, localhost
virtual_mailbox_base = $dir/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:$(id -u nobody)
virtual_gid_maps = static:$(id -g nobody)
default_transport = error:5.7.1 the test instance delivers nothing off this machine
relay_transport = \$default_transport
alias_maps =
alias_database =
biff = no
EOF
}

write_master_cf() {
    local dir=$1 port=$2
    {
        echo "# Written by spec/support/postfix.sh; edits are lost on the next start."
        echo "# No chroot: the instance lives wherever DIR is."
        smtpd_service "$port"
        # The TLS ports; keep in step with the map at the top.
        local implicit='-o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt'
        local chain="-o smtpd_tls_chain_files=\$test_certs/"
        smtpd_service $((port + 1)) -o smtpd_tls_security_level=may -o smtpd_sasl_auth_enable=yes
        smtpd_service $((port + 2)) "$implicit" -o smtpd_sasl_auth_enable=yes
        smtpd_service $((port + 3)) -o smtpd_tls_security_level=may \
            -o smtpd_tls_protocols=\$test_tls12_only -o smtpd_tls_mandatory_protocols=\$test_tls12_only
        smtpd_service $((port + 4)) "$implicit" -o smtpd_tls_ask_ccert=yes -o smtpd_tls_req_ccert=yes \
            -o smtpd_tls_CAfile=\$test_certs/ca.pem
        smtpd_service $((port + 5)) "$implicit" "${chain}expired.key,\$test_certs/expired.pem"
        smtpd_service $((port + 6)) "$implicit" "${chain}wrongname.key,\$test_certs/wrongname.pem"
        smtpd_service $((port + 7)) "$implicit" "${chain}selfsigned.key,\$test_certs/selfsigned.pem"
        smtpd_service $((port + 8)) "$implicit" "${chain}otherca-server.key,\$test_certs/otherca-server.pem"
        smtpd_service $((port + 9)) -o smtpd_sasl_auth_enable=yes -o smtpd_tls_auth_only=no
        smtpd_service $((port + 10)) -o message_size_limit=100000
        cat <<'EOF'
cleanup    unix  n - n -   0 cleanup
qmgr       unix  n - n 300 1 qmgr
rewrite    unix  - - n -   - trivial-rewrite
bounce     unix  - - n -   0 bounce
defer      unix  - - n -   0 bounce
trace      unix  - - n -   0 bounce
verify     unix  - - n -   1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -   - proxymap
showq      unix  n - n -   - showq
error      unix  - - n -   - error
retry      unix  - - n -   - error
discard    unix  - - n -   - discard
virtual    unix  - n n -   - virtual
anvil      unix  - - n -   1 anvil
scache     unix  - - n -   1 scache
postlog    unix-dgram n - n - 1 postlogd
tlsmgr     unix  - - n 1000? 1 tlsmgr
EOF
    } > "$dir/master.cf"
}

# The SASL users of the port map, as "user password" lines.
sasl_users() {
    printf '%s\n' 'alice alice-secret-pw' 'bob pässwörd'
}

# Cyrus SASL's configuration for Postfix's smtpd, and the sasldb with the
# users, readable by smtpd (it runs as postfix, unchrooted).
write_sasl() {
    local dir=$1 user password
    rm -rf "$dir/sasl"
    mkdir -p "$dir/sasl"
    cat > "$dir/sasl/smtpd.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: $dir/sasl/sasldb2
mech_list: PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256 NTLM
EOF
    while read -r user password; do
        printf '%s' "$password" | saslpasswd2 -c -p -f "$dir/sasl/sasldb2" -u example.test "$user" \
            || die "saslpasswd2 could not add $user to $dir/sasl/sasldb2"
    done < <(sasl_users)
    chgrp -R postfix "$dir/sasl"
    chmod 750 "$dir/sasl"
    chmod 640 "$dir/sasl/smtpd.conf" "$dir/sasl/sasldb2"
}

stop_instance() {
    local dir=$1 pid i
    [[ -f $dir/main.cf ]] || return 0
    postfix -c "$dir" status >/dev/null 2>&1 || return 0
    pid=$(tr -d ' ' < "$dir/queue/pid/master.pid")
    # What "postfix stop" does, without its one-second polling.
    kill "$pid" || die "cannot signal master $pid of $dir"
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    die "master $pid of $dir still running 10 s after stop"
}

# The maillog's end, less the ownership warnings that come from keeping
# the queue inside the configuration directory.
log_tail() {
    grep -v -e 'not owned by' -e 'group or other writable' "$1/maillog" 2>/dev/null | tail -n 20
}

# Read the banner, so that "started" means "accepting mail".
await_banner() {
    local port=$1 banner
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    read -r -t 10 banner <&3 || banner=
    printf 'QUIT\r\n' >&3
    exec 3>&-
    [[ $banner == 220* ]]
}

# AUTH with every mechanism of the port map on plainauth, so that "started"
# means Cyrus found its plugins and the sasldb.
await_sasl() {
    local port=$1 line mechs='' m
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    read -r -t 10 line <&3 || return 1
    printf 'EHLO localhost\r\n' >&3
    while read -r -t 10 line <&3; do
        line=${line%$'\r'}
        [[ $line == 250[-\ ]AUTH\ * ]] && mechs=${line#250?AUTH }
        [[ $line == 250\ * ]] && break
    done
    printf 'QUIT\r\n' >&3
    exec 3>&-
    for m in PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256 NTLM; do
        [[ " $mechs " == *" $m "* ]] || { echo "AUTH on port $port offers \"$mechs\", not $m" >&2; return 1; }
    done
}

# A handshake on every TLS port, so that "started" means each smtpd loaded
# its certificate; then the log must hold no TLS warning or error.
await_tls() {
    local dir=$1 port=$2 i problems
    local certs=$dir/certs
    local args=(-brief -CAfile "$certs/ca.pem")
    for i in 1 3; do
        timeout 10 openssl s_client "${args[@]}" -starttls smtp -connect "127.0.0.1:$((port + i))" \
            </dev/null >/dev/null 2>&1 || return 1
    done
    for i in 2 5 6 7 8; do
        timeout 10 openssl s_client "${args[@]}" -connect "127.0.0.1:$((port + i))" </dev/null >/dev/null 2>&1 || return 1
    done
    timeout 10 openssl s_client "${args[@]}" -cert "$certs/client.pem" -key "$certs/client.key" \
        -connect "127.0.0.1:$((port + 4))" </dev/null >/dev/null 2>&1 || return 1
    problems=$(grep -iE 'warning|error|fatal|panic' "$dir/maillog" | grep -v -e 'not owned by' -e 'group or other writable')
    [[ -z $problems ]] || { echo "$problems" >&2; return 1; }
}

start_instance() {
    local dir=$1 port=$2
    stop_instance "$dir"
    rm -rf "$dir/queue" "$dir/data" "$dir/mail" "$dir/maillog"
    # Postfix daemons run as the postfix user and virtual(8) delivers as
    # nobody: both must reach into DIR whatever the umask was.
    chmod 755 "$dir"
    mkdir -p "$dir/queue" "$dir/data" "$dir/mail"
    "$here/certs.sh" "$dir/certs" || die "certs.sh $dir/certs failed"
    chown postfix "$dir/data"
    chown nobody:"$(id -gn nobody)" "$dir/mail"
    write_sasl "$dir"
    write_main_cf "$dir"
    write_master_cf "$dir" "$port"
    # Postfix waits two seconds for a main.cf modified just now to settle.
    touch -d '-5 seconds' "$dir/main.cf" "$dir/master.cf"
    # Postfix reports to a terminal or to maillog, never to a pipe.
    postfix -c "$dir" start >/dev/null 2>&1 || die "postfix -c $dir start failed; $dir/maillog:
$(log_tail "$dir")"
    await_banner "$port" || die "no 220 banner on 127.0.0.1:$port; see $dir/maillog:
$(log_tail "$dir")"
    await_tls "$dir" "$port" || die "TLS does not work on ports $((port + 1))-$((port + 8)); see $dir/maillog:
$(log_tail "$dir")"
    await_sasl $((port + 9)) || die "AUTH does not work on port $((port + 9)); see $dir/maillog:
$(log_tail "$dir")"
}

[[ $# -ge 2 ]] || usage
[[ $EUID -eq 0 ]] || die "must run as root (Postfix's master needs it)"
command -v postfix >/dev/null || die "postfix is not installed (apt-get install postfix)"
command -v saslpasswd2 >/dev/null || die "saslpasswd2 is not installed (apt-get install sasl2-bin)"
case $1 in
    start)
        [[ $# -eq 3 && $3 =~ ^[0-9]+$ ]] || usage
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
