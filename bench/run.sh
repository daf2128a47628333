#!/bin/sh
# run.sh -- what `make bench` runs: a certificate made now, Postfix's
# smtp-sink on loopback (plaintext) with stunnel in front of it (implicit
# TLS), the test data, then bench/bench.lua, which runs ours and every
# peer in turn and writes bench/results.md.  The servers are stopped, by
# their process ids, whatever happens.
#
#   bench/run.sh TREE BUILD [COMMAND...]
#
# TREE's lua/ and BUILD's smtp/core.so are the module measured.  With a
# COMMAND (bench/profile.sh), that runs instead of bench.lua, with the same
# servers and environment.
#
# Environment (all optional): BENCH_LUA (lua5.4), BENCH_PYTHON
# (/usr/bin/python3), BENCH_PORT (29025; BENCH_PORT+1 is the TLS port),
# BENCH_SERVER_CPU (1), BENCH_CLIENT_CPU (0), BENCH_REPS (5),
# BENCH_SECONDS (1, per timed run), BENCH_ONLY (a Lua pattern: only the
# figures whose key matches), BENCH_OUT (bench/results.md).
set -eu

TREE=$(cd "${1:?usage: run.sh TREE BUILD [COMMAND...]}" && pwd)
BUILD=$(cd "${2:?usage: run.sh TREE BUILD [COMMAND...]}" && pwd)
shift 2
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
LUA=${BENCH_LUA:-lua5.4}
PORT=${BENCH_PORT:-29025}
TLS_PORT=$((PORT + 1))
SERVER_CPU=${BENCH_SERVER_CPU:-1}

for tool in smtp-sink smtp-source stunnel4 openssl taskset "$LUA"; do
  command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
  command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool is missing (make bench-deps)" >&2; exit 1; }
done

# A port that answers already is someone else's server: never measure it.
port_busy() {
  ${BENCH_PYTHON:-/usr/bin/python3} -c 'import socket,sys
s=socket.socket(); s.settimeout(0.5)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"
}
for p in "$PORT" "$TLS_PORT"; do
  if port_busy "$p"; then echo "bench: port $p is in use; set BENCH_PORT" >&2; exit 1; fi
done

WORK=$(mktemp -d /tmp/smtp-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=""
cleanup() {
  for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
  for pid in $PIDS; do
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The certificate every TLS client verifies: RSA 2048, for localhost and 127.0.0.1.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

# smtp-sink drops to nobody when started as root.
SINK_USER=""
[ "$(id -u)" = 0 ] && SINK_USER="-u nobody"
# shellcheck disable=SC2086
taskset -c "$SERVER_CPU" smtp-sink $SINK_USER "127.0.0.1:$PORT" 1000 >"$WORK/sink.log" 2>&1 &
PIDS="$PIDS $!"

cat >"$WORK/stunnel.conf" <<EOF
foreground = yes
pid =
debug = 3
output = $WORK/stunnel.log
[smtps]
accept = 127.0.0.1:$TLS_PORT
connect = 127.0.0.1:$PORT
cert = $WORK/cert.pem
key = $WORK/key.pem
EOF
taskset -c "$SERVER_CPU" stunnel4 "$WORK/stunnel.conf" >"$WORK/stunnel.out" 2>&1 &
PIDS="$PIDS $!"

# Both up within 5 s, or the logs say why not.
i=0
until port_busy "$PORT" && port_busy "$TLS_PORT"; do
  i=$((i + 1))
  if [ $i -gt 50 ]; then
    echo "bench: the servers did not start:" >&2
    cat "$WORK/sink.log" "$WORK/stunnel.out" "$WORK/stunnel.log" >&2 2>/dev/null || true
    exit 1
  fi
  sleep 0.1
done

export BENCH_WORK="$WORK" BENCH_TREE="$TREE" BENCH_BUILD="$BUILD" BENCH_DIR="$BENCH_DIR" \
  BENCH_PORT="$PORT" BENCH_TLS_PORT="$TLS_PORT"
if [ $# -gt 0 ]; then
  "$@"
  exit $?
fi

# Test data: 20 and 100 MiB to attach, 64 MiB of random bytes and of text.
head -c $((20 << 20)) /dev/urandom >"$WORK/attach.bin"
head -c $((100 << 20)) /dev/urandom >"$WORK/attach100.bin"
head -c $((64 << 20)) /dev/urandom >"$WORK/random.bin"
"$LUA" - "$BENCH_DIR" "$WORK/text.txt" <<'EOF'
package.path = arg[1] .. "/?.lua;" .. package.path
local f = assert(io.open(arg[2], "wb"))
assert(f:write(require("common").text(64 << 20)))
f:close()
EOF

"$LUA" "$BENCH_DIR/bench.lua"
