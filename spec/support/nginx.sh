#!/bin/bash
# A private nginx with the Lua module (Debian's nginx, libnginx-mod-http-lua,
# lua-resty-core) for spec/ngx_spec.lua, separate from the system one.
#
#   spec/support/nginx.sh start DIR PORT [CPATH]  # (re)write DIR, start, wait until it answers
#   spec/support/nginx.sh stop DIR                # stop it, by its pid file, and wait
#
# DIR holds everything: conf/nginx.conf, logs/ (error.log, access.log,
# nginx.pid) and tmp/. nginx listens on 127.0.0.1:PORT only, as one process
# (master_process off: the worker is the process that serves every request,
# so a request answered while another waits proves the wait did not block
# it), in the background (daemon on). Its Lua code is the repository's lua/
# and spec/support/ngx_app.lua (the locations are documented there); CPATH
# is the directory of the module built against LuaJIT (smtp/core.so inside;
# default: build/luajit). SMTP_TEST_POSTFIX_PORT (default 2525) is the port
# of the test Postfix, for the connection that init_by_lua describes.
set -euo pipefail
PATH=$PATH:/usr/sbin
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
PYTHON=${SMTP_TEST_PYTHON:-/usr/bin/python3}
MODULES=${SMTP_TEST_NGINX_MODULES:-/usr/lib/nginx/modules}

die() {
    echo "nginx.sh: $*" >&2
    exit 1
}

usage() {
    die "usage: $0 start DIR PORT [CPATH] | stop DIR"
}

# A process that exited may linger as a zombie where nothing reaps orphans
# (containers): that counts as gone.
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
    [ "$state" != Z ]
}

# Whether GET / on 127.0.0.1:$1 is answered.
answering() {
    "$PYTHON" -c 'import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
    s.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
    sys.exit(0 if s.recv(12).startswith(b"HTTP/1.1 200") else 1)
except OSError:
    sys.exit(1)' "$1"
}

stop() {
    local pidfile=$1/logs/nginx.pid pid i=0
    [ -s "$pidfile" ] || return 0
    pid=$(tr -dc 0-9 < "$pidfile")
    if [ -z "$pid" ] || ! alive "$pid"; then
        rm -f "$pidfile"
        return 0
    fi
    kill -QUIT "$pid" 2>/dev/null || true
    while alive "$pid"; do
        i=$((i + 1))
        if [ $i -eq 50 ]; then kill -TERM "$pid" 2>/dev/null || true; fi
        [ $i -le 100 ] || die "nginx (pid $pid) still running 10 s after SIGQUIT"
        sleep 0.1
    done
    rm -f "$pidfile"
}

write_conf() {
    local dir=$1 port=$2 cpath=$3
    cat > "$dir/conf/nginx.conf" <<EOF
# Written by spec/support/nginx.sh; edits are lost on the next start.
load_module $MODULES/ndk_http_module.so;
load_module $MODULES/ngx_http_lua_module.so;

daemon on;
master_process off;
worker_processes 1;
pid $dir/logs/nginx.pid;
error_log $dir/logs/error.log warn;
env SMTP_TEST_POSTFIX_PORT;

events {
    worker_connections 256;
}

http {
    access_log $dir/logs/access.log;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    default_type text/plain;

    lua_package_path "$repo/lua/?.lua;$repo/lua/?/init.lua;$repo/?.lua;;";
    lua_package_cpath "$cpath/?.so;;";
    lua_shared_dict smtp_test 1m;

    # A connection described before any request: cosockets come later.
    init_by_lua_block {
        require("spec.support.ngx_app").init()
    }

    server {
        listen 127.0.0.1:$port;

        location = /ping { return 200 "pong\n"; }

        # Sends and tests from the phases that have cosockets.
        location = /send { content_by_lua_block { require("spec.support.ngx_app").send() } }
        location = /access-send {
            access_by_lua_block { require("spec.support.ngx_app").send() }
        }
        location = /rewrite-send {
            rewrite_by_lua_block { require("spec.support.ngx_app").send() }
        }
        location = /init-conn { content_by_lua_block { require("spec.support.ngx_app").init_conn() } }
        location = /timer { content_by_lua_block { require("spec.support.ngx_app").timer() } }
        location = /result { content_by_lua_block { require("spec.support.ngx_app").result() } }
        location = /event { content_by_lua_block { require("spec.support.ngx_app").event() } }
        location = /events { content_by_lua_block { require("spec.support.ngx_app").events() } }

        # Phases without cosockets: the error, in a response header or the body.
        location = /header-filter {
            content_by_lua_block { ngx.say("body") }
            header_filter_by_lua_block { require("spec.support.ngx_app").header_filter() }
        }
        location = /set {
            set_by_lua_block \$smtp_error { return require("spec.support.ngx_app").set() }
            return 200 "\$smtp_error\n";
        }
        location = /log {
            content_by_lua_block { ngx.say("logged") }
            log_by_lua_block { require("spec.support.ngx_app").log() }
        }
    }
}
EOF
}

start() {
    local dir=$1 port=$2 cpath=${3:-$repo/build/luajit}
    [ -f "$MODULES/ngx_http_lua_module.so" ] || die "no $MODULES/ngx_http_lua_module.so (apt-get install libnginx-mod-http-lua)"
    [ -f "$cpath/smtp/core.so" ] || die "no $cpath/smtp/core.so (the module built against LuaJIT: make $cpath/smtp/core.so)"
    mkdir -p "$dir"
    stop "$dir"
    rm -rf "$dir/conf" "$dir/logs" "$dir/tmp"
    mkdir -p "$dir/conf" "$dir/logs" "$dir/tmp"
    write_conf "$dir" "$port" "$cpath"
    nginx -p "$dir" -c "$dir/conf/nginx.conf" -e "$dir/logs/error.log" \
        || die "nginx did not start; see $dir/logs/error.log"
    local i=0
    until answering "$port"; do
        i=$((i + 1))
        if [ $i -gt 100 ]; then
            stop "$dir" || true
            die "nginx does not answer on 127.0.0.1:$port after 10 s; see $dir/logs/error.log"
        fi
        sleep 0.1
    done
    echo "nginx on 127.0.0.1:$port (pid $(cat "$dir/logs/nginx.pid"))"
}

case ${1:-} in
    start) [ $# -ge 3 ] || usage; start "$2" "$3" "${4:-}" ;;
    stop) [ $# -ge 2 ] || usage; stop "$2" ;;
    *) usage ;;
esac
