#!/bin/sh
# make demo: a local aiosmtpd debugging server, examples/demo.lua against it,
# then what the server received.
set -e
LUA=${1:-lua5.4}
cd "$(dirname "$0")/.."
out=$(mktemp)
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
/usr/bin/python3 -u -m aiosmtpd -n -l "127.0.0.1:$port" -c aiosmtpd.handlers.Debugging >"$out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$out"' EXIT
i=0
until /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 50 ] || { echo "aiosmtpd did not start" >&2; exit 1; }; sleep 0.1
done
echo "== aiosmtpd debugging server on 127.0.0.1:$port"
LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" "$LUA" examples/demo.lua "$port"
sleep 0.3
echo "== what the server received"
cat "$out"
