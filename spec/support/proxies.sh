#!/bin/sh
# Private proxies for the specs, separate from any system service.
#
#   spec/support/proxies.sh start DIR   # (re)write DIR, start all, wait until each listens
#   spec/support/proxies.sh stop DIR    # stop what "start DIR" started, by its pid files
#
# All listen on 127.0.0.1 only, on fixed ports (environment, default; the
# defaults are the Makefile's and spec/support/server.lua's proxies()):
#   SMTP_TEST_SOCKS_PORT      21080  danted: SOCKS4 and SOCKS5, no authentication
#   SMTP_TEST_SOCKS_AUTH_PORT 21081  danted: SOCKS5 with username/password only
#   SMTP_TEST_SOCKS4A_PORT    21082  socks4a.py: SOCKS4 and SOCKS4a; it logs each
#                                    destination as the client sent it (a name
#                                    for 4a) to DIR/socks4a.log, JSON per line
#   SMTP_TEST_HTTP_PORT       28888  tinyproxy: CONNECT, no authentication
#   SMTP_TEST_HTTP_AUTH_PORT  28889  tinyproxy: CONNECT with Basic authentication
# The credentials are SMTP_TEST_PROXY_USER (smtptest) and
# SMTP_TEST_PROXY_PASSWORD (smtptest-proxy-pw).  Dante checks them against
# the system's password database, so "start" creates that system user (no
# home, no login shell) if missing and sets its password.
#
# Every proxy may CONNECT to any port.  Dante and socks4a.py reach loopback
# destinations only (127.0.0.0/8 and ::1, names resolved by the proxy):
# dante refuses any other with SOCKS5 reply 2 ("not allowed by ruleset") or
# SOCKS4 91, a refusal ready for tests.  tinyproxy has no ConnectPort line,
# which allows every port (its packaged config allows 443 and 563 only); it
# answers wrong credentials with 401, none with 407, and a destination it
# cannot reach with "500 Unable to connect".
#
# DIR holds the configs, logs (danted-*.log, tinyproxy-*.log, socks4a.log)
# and pid files.  "start" stops an earlier start on the same DIR first and
# fails if another process holds a port.  Needs root, danted and tinyproxy
# (apt-get install dante-server tinyproxy) and /usr/bin/python3.
set -eu

SOCKS_PORT=${SMTP_TEST_SOCKS_PORT:-21080}
SOCKS_AUTH_PORT=${SMTP_TEST_SOCKS_AUTH_PORT:-21081}
SOCKS4A_PORT=${SMTP_TEST_SOCKS4A_PORT:-21082}
HTTP_PORT=${SMTP_TEST_HTTP_PORT:-28888}
HTTP_AUTH_PORT=${SMTP_TEST_HTTP_AUTH_PORT:-28889}
PROXY_USER=${SMTP_TEST_PROXY_USER:-smtptest}
PROXY_PASSWORD=${SMTP_TEST_PROXY_PASSWORD:-smtptest-proxy-pw}
PYTHON=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)

# The instances: name and port.  Their files are DIR/NAME.conf, .log, .pid.
INSTANCES="danted-socks danted-socks-auth socks4a tinyproxy-http tinyproxy-http-auth"

die() {
    echo "proxies.sh: $*" >&2
    exit 1
}

usage() {
    die "usage: $0 start DIR | stop DIR"
}

port_of() {
    case $1 in
        danted-socks) echo "$SOCKS_PORT" ;;
        danted-socks-auth) echo "$SOCKS_AUTH_PORT" ;;
        socks4a) echo "$SOCKS4A_PORT" ;;
        tinyproxy-http) echo "$HTTP_PORT" ;;
        tinyproxy-http-auth) echo "$HTTP_AUTH_PORT" ;;
    esac
}

# Whether something accepts connections on 127.0.0.1:$1.
listening() {
    "$PYTHON" -c 'import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
except OSError:
    sys.exit(1)' "$1"
}

# A process that exited may linger as a zombie where nothing reaps orphans
# (containers): that counts as gone.
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
    [ "$state" != Z ]
}

stop_instance() {
    pidfile=$1/$2.pid
    [ -s "$pidfile" ] || return 0
    pid=$(tr -dc 0-9 < "$pidfile")
    rm -f "$pidfile"
    [ -n "$pid" ] && alive "$pid" || return 0
    kill "$pid" 2>/dev/null || return 0
    i=0
    while alive "$pid"; do
        i=$((i + 1))
        [ $i -le 100 ] || die "$2 (pid $pid) still running 10 s after SIGTERM"
        sleep 0.1
    done
}

stop_all() {
    for name in $INSTANCES; do
        stop_instance "$1" "$name"
    done
}

# Dante checks the username method against the system's password database.
ensure_user() {
    if ! id "$PROXY_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$PROXY_USER" || die "cannot create user $PROXY_USER"
    fi
    echo "$PROXY_USER:$PROXY_PASSWORD" | chpasswd || die "cannot set the password of $PROXY_USER"
}

# $1 DIR, $2 name, $3 port, $4 socksmethod (none or username).
write_danted_conf() {
    cat > "$1/$2.conf" <<EOF
# Written by spec/support/proxies.sh; edits are lost on the next start.
logoutput: $1/$2.log
internal: 127.0.0.1 port = $3
external: lo
clientmethod: none
socksmethod: $4
user.privileged: root
user.unprivileged: nobody
client pass {
  from: 127.0.0.1/32 to: 0/0
  log: error
}
socks pass {
  from: 127.0.0.1/32 to: 127.0.0.0/8
  command: connect
  log: connect error
}
socks pass {
  from: 127.0.0.1/32 to: ::1/128
  command: connect
  log: connect error
}
socks block {
  from: 0/0 to: 0/0
  log: connect error
}
EOF
}

# $1 DIR, $2 name, $3 port, then "auth" for Basic authentication.
write_tinyproxy_conf() {
    cat > "$1/$2.conf" <<EOF
# Written by spec/support/proxies.sh; edits are lost on the next start.
# No ConnectPort line: CONNECT may reach any port.
Port $3
Listen 127.0.0.1
Timeout 60
User nobody
Group $(id -gn nobody)
LogFile "$1/$2.log"
LogLevel Connect
PidFile "$1/$2.pid"
MaxClients 64
Allow 127.0.0.1
DisableViaHeader Yes
EOF
    if [ "${4:-}" = auth ]; then
        echo "BasicAuth $PROXY_USER $PROXY_PASSWORD" >> "$1/$2.conf"
    fi
}

start_danted() {
    write_danted_conf "$1" "$2" "$(port_of "$2")" "$3"
    danted -D -f "$1/$2.conf" -p "$1/$2.pid" ||
        die "danted for $2 did not start; see $1/$2.log"
}

start_tinyproxy() {
    write_tinyproxy_conf "$1" "$2" "$(port_of "$2")" "${3:-}"
    # tinyproxy opens its log after dropping to nobody.
    : > "$1/$2.log"
    chown nobody "$1/$2.log"
    tinyproxy -c "$1/$2.conf" || die "tinyproxy for $2 did not start; see $1/$2.log"
}

start_socks4a() {
    # setsid: no terminal or process group of the caller's to die with.
    setsid "$PYTHON" "$HERE/socks4a.py" --port "$SOCKS4A_PORT" --log "$1/socks4a.log" \
        --pidfile "$1/socks4a.pid" > "$1/socks4a.err" 2>&1 < /dev/null &
}

# Every instance listens, or the start failed: say where to look.
await_all() {
    for name in $INSTANCES; do
        port=$(port_of "$name")
        i=0
        until [ -s "$1/$name.pid" ] && listening "$port"; do
            i=$((i + 1))
            [ $i -le 100 ] || die "$name is not listening on 127.0.0.1:$port after 10 s; see $1/$name.log"
            sleep 0.1
        done
    done
}

start_all() {
    stop_all "$1"
    for name in $INSTANCES; do
        port=$(port_of "$name")
        if listening "$port"; then
            die "127.0.0.1:$port ($name) is taken by another process; set its SMTP_TEST_*_PORT"
        fi
    done
    ensure_user
    rm -f "$1"/*.log "$1"/socks4a.err
    start_danted "$1" danted-socks none
    start_danted "$1" danted-socks-auth username
    start_socks4a "$1"
    start_tinyproxy "$1" tinyproxy-http
    start_tinyproxy "$1" tinyproxy-http-auth auth
    await_all "$1"
}

[ $# -eq 2 ] || usage
[ "$(id -u)" -eq 0 ] || die "must run as root (dante's username method reads /etc/shadow)"
case $1 in
    start)
        command -v danted >/dev/null || die "danted is not installed (apt-get install dante-server)"
        command -v tinyproxy >/dev/null || die "tinyproxy is not installed (apt-get install tinyproxy)"
        [ -x "$PYTHON" ] || die "$PYTHON is missing"
        mkdir -p "$2"
        start_all "$(cd "$2" && pwd)"
        ;;
    stop)
        [ -d "$2" ] || exit 0
        stop_all "$(cd "$2" && pwd)"
        ;;
    *) usage ;;
esac
