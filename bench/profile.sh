#!/bin/sh
# profile.sh -- where the time goes for 1 KiB messages over one plaintext
# session (session:send in a loop, and Session:send_many when the tree has
# it): client CPU per message, system calls per message (strace -c),
# heap allocations per message (valgrind), CPU by library (perf, software
# clock: the hardware counters may be missing in a VM) and by Lua function
# (bench/luaprof.lua).  Run by `make bench-profile` through bench/run.sh,
# which starts the sink and sets BENCH_*; writes bench/profile.md.
set -eu

: "${BENCH_WORK:?run through bench/run.sh (make bench-profile)}"
LUA=${BENCH_LUA:-lua5.4}
CPU=${BENCH_CLIENT_CPU:-0}
OUT=${BENCH_PROFILE_OUT:-$BENCH_DIR/profile.md}
HOST=127.0.0.1
PORT=$BENCH_PORT
export LUA_PATH="$BENCH_DIR/?.lua;$BENCH_TREE/lua/?.lua;$BENCH_TREE/lua/?/init.lua;;"
export LUA_CPATH="$BENCH_BUILD/?.so;;"
OURS="$BENCH_DIR/ours.lua"
T=$BENCH_WORK/profile
mkdir -p "$T"

ours() { taskset -c "$CPU" "$LUA" "$OURS" "$@"; }

MODES="plain"
if ours plain-many $HOST "$PORT" '#1' 10 >/dev/null 2>&1; then MODES="plain plain-many"; fi

# "#N": N messages.  plain-many sends N batches of 100.
count_arg() { if [ "$1" = plain-many ]; then echo "#$(($2 / 100)) 100"; else echo "#$2"; fi; }

{
echo "# Profile: 1 KiB messages over one plaintext session"
echo
echo "Made by \`make bench-profile\` on $(date -u '+%Y-%m-%d %H:%M UTC'); client on CPU $CPU," \
  "smtp-sink on CPU ${BENCH_SERVER_CPU:-1}; load average $(cut -d' ' -f1-3 /proc/loadavg)."

for mode in $MODES; do
  echo
  echo "## $mode"
  echo
  # shellcheck disable=SC2046
  line=$(ours $mode $HOST "$PORT" $(count_arg $mode 3000))
  echo "- 3000 messages: $(echo "$line" | awk '{printf "%s msgs/s, client CPU %s µs per message (user+sys)", $1, $3}')"

  # system calls per message: the difference of two runs, so that start-up does not count
  if command -v strace >/dev/null 2>&1; then
    # shellcheck disable=SC2046
    taskset -c "$CPU" strace -c -o "$T/s1" "$LUA" "$OURS" $mode $HOST "$PORT" $(count_arg $mode 500) >/dev/null
    # shellcheck disable=SC2046
    taskset -c "$CPU" strace -c -o "$T/s2" "$LUA" "$OURS" $mode $HOST "$PORT" $(count_arg $mode 2500) >/dev/null
    echo "- system calls per message (strace -c, 2500 minus 500 messages):"
    awk 'function row(f) { if ($NF == "total" || $1 !~ /^[0-9.]+$/) return; calls[$NF, f] = $4; if (NF == 6) errs[$NF, f] = $5; names[$NF] = 1 }
      FNR == 1 { f++ } { row(f) }
      END { for (n in names) { d = (calls[n, 2] - calls[n, 1]) / 2000; e = (errs[n, 2] - errs[n, 1]) / 2000
              if (d >= 0.05) { note = ""; if (e >= 0.05) note = sprintf(" (%.2f of them failing)", e)
                    printf "  - %s: %.2f%s\n", n, d, note; t += d } }
            printf "  - in all: %.2f\n", t }' "$T/s1" "$T/s2" | sort | awk '/in all/ { t = $0; next } { print } END { print t }'
  fi

  # heap allocations per message (malloc/realloc calls: Lua allocates through realloc)
  if command -v valgrind >/dev/null 2>&1; then
    for n in 100 300; do
      # shellcheck disable=SC2046
      valgrind --tool=memcheck "$LUA" "$OURS" $mode $HOST "$PORT" $(count_arg $mode $n) 2>&1 >/dev/null \
        | sed -n 's/.*total heap usage: \([0-9,]*\) allocs, [0-9,]* frees, \([0-9,]*\) bytes allocated.*/\1 \2/p' \
        | tr -d , >"$T/v$n"
    done
    paste "$T/v100" "$T/v300" | awk '{ printf "- heap allocations per message (valgrind, 300 minus 100 messages): %.0f, %.1f KiB\n", ($3 - $1) / 200, ($4 - $2) / 200 / 1024 }'
  fi

  # CPU by library and the hottest C functions
  if command -v perf >/dev/null 2>&1; then
    # shellcheck disable=SC2046
    taskset -c "$CPU" perf record -q -e cpu-clock -o "$T/perf.data" "$LUA" "$OURS" $mode $HOST "$PORT" \
      $(count_arg $mode 5000) >/dev/null 2>&1 || true
    if [ -s "$T/perf.data" ]; then
      echo "- client CPU by library (perf, cpu-clock samples; lua5.4 is the interpreter: Lua code and the GC):"
      perf report -i "$T/perf.data" --no-children --sort dso 2>/dev/null \
        | awk '/^ +[0-9.]+%/ && $1 + 0 >= 0.5 { printf "  - %s %s\n", $2, $1 }'
      echo "- hottest named functions outside the interpreter:"
      perf report -i "$T/perf.data" --no-children --sort dso,sym 2>/dev/null \
        | awk '/^ +[0-9.]+%/ && $2 != "lua5.4" && $4 !~ /^0x/ { printf "  - %s %s %s\n", $1, $2, $4; if (++n == 12) exit }'
    fi
  fi

  # CPU by Lua function
  echo "- client CPU by Lua function (bench/luaprof.lua; C functions and system calls count for the Lua"
  echo "  function running next, so treat neighbours as one):"
  echo '```'
  # shellcheck disable=SC2046
  BENCH_PROF_EVERY=100 taskset -c "$CPU" "$LUA" "$BENCH_DIR/luaprof.lua" "$OURS" $mode $HOST "$PORT" \
    $(count_arg $mode 2000) 2>&1 | sed -n '2,40p' | grep -v -e 'luaprof.lua' -e '\[C\] ?' -e '\[C\] pcall' -e 'ours.lua'
  echo '```'
done
} | tee "$OUT"
echo "bench: written to $OUT" >&2
