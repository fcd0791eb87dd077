# Process and file helpers shared by bench/proxy_bench.sh and bench/ratelimit_accuracy.sh
# (sourced, not run). The sourcing script defines NAME (its name, for messages), LIB, the PIDS
# array of its children (each started with setsid, so that its whole process group can be
# stopped) and die().
# shellcheck shell=bash

# stop_pid PID: SIGTERM to its process group, up to 5 s, then SIGKILL; forgets it in PIDS.
stop_pid() {
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

free_port() { python3 "$LIB/benchlib.py" ports 1; }

# wait_http URL PID LOG [SECONDS]: until URL answers 2xx; fails early when PID exits.
wait_http() {
  local url=$1 pid=$2 log=$3 secs=${4:-15} i
  for ((i = 0; i < secs * 20; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$NAME: process $pid exited before $url answered; last lines of $log:" >&2
      tail -n 20 "$log" >&2 || true
      return 1
    fi
    curl -sf -o /dev/null --max-time 1 "$url" && return 0
    sleep 0.05
  done
  echo "$NAME: $url did not answer within ${secs}s; last lines of $log:" >&2
  tail -n 20 "$log" >&2 || true
  return 1
}

render() { # TEMPLATE OUT KEY=VALUE...
  local tmpl=$1 out=$2 args=() kv
  shift 2
  for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${args[@]}" "$tmpl" >"$out"
  if grep -q '@[A-Z_0-9]*@' "$out"; then die "unfilled placeholder in $out"; fi
}
