#!/usr/bin/env bash
# System calls per proxied request, for sluice and its peers: each proxy (one worker, on CPU 1)
# in front of a sluice sample-service, wrk keep-alive load (on CPU 0), and perf counting the
# proxy's syscalls by kind for a few seconds of that load. Needs perf (Debian: linux-perf) and
# permission to use the syscall tracepoints (root).
#
# usage: bench/syscall_count.sh [--sluice PATH] [--conns N] [--duration SEC] [--proxies LIST]
# Columns are calls per request (requests from wrk's rate over the counted seconds); EAGAIN counts
# recvfrom and read calls that found nothing to read; other = every syscall not in a column.
set -euo pipefail

NAME=syscall_count
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIB=$ROOT/bench/lib
CONF=$ROOT/bench/conf
SLUICE=${SLUICE_BIN:-$ROOT/build/sluice}
CONNS=64
DURATION=3
PROXIES=sluice,nginx,haproxy
PIDS=()

die() { echo "$NAME: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --sluice) SLUICE=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --proxies) PROXIES=$2; shift 2 ;;
    -h | --help) sed -n 2,9p "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
command -v perf >/dev/null || die "perf not found (apt-get install linux-perf)"
command -v wrk >/dev/null || die "wrk not found (scripts/install-deps.sh installs it)"
[ -x "$SLUICE" ] || die "no sluice binary at $SLUICE (make build)"
# shellcheck source=lib/procs.sh
source "$LIB/procs.sh"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-syscalls.XXXXXX")
cleanup() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  rm -rf "$TMP"
}
trap cleanup EXIT

BACKEND_PORT=$(free_port)
setsid taskset -c 0 "$SLUICE" sample-service --listen "127.0.0.1:$BACKEND_PORT" --name b --city a \
  --workers 1 >"$TMP/backend.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$BACKEND_PORT/healthz" "${PIDS[-1]}" "$TMP/backend.log"

EVENTS=(recvfrom sendto read write readv writev epoll_wait epoll_pwait epoll_ctl io_uring_enter)
printf '%-8s %9s' proxy "req/s"
for e in total "${EVENTS[@]}" other EAGAIN; do printf ' %9s' "${e:0:9}"; done
echo "   (per request)"

IFS=, read -r -a LIST <<<"$PROXIES"
for proxy in "${LIST[@]}"; do
  port=$(free_port)
  dir=$TMP/$proxy
  mkdir -p "$dir"
  case $proxy in
    sluice)
      render "$CONF/sluice-gateway.yaml.in" "$dir/gateway.yaml" LISTEN_PORT="$port" \
        ADMIN_PORT="$(free_port)" BACKEND_PORT="$BACKEND_PORT" KEEPALIVE="$CONNS"
      setsid taskset -c 1 "$SLUICE" gateway --config "$dir/gateway.yaml" >"$dir/log" 2>&1 &
      ;;
    nginx)
      render "$CONF/nginx-proxy.conf.in" "$dir/nginx.conf" TMP="$dir" LISTEN_PORT="$port" \
        BACKEND_PORT="$BACKEND_PORT" KEEPALIVE="$CONNS" NOFILE=4096 WORKER_CONNECTIONS=4000
      setsid taskset -c 1 nginx -c "$dir/nginx.conf" -p "$dir" >"$dir/log" 2>&1 &
      ;;
    haproxy)
      render "$CONF/haproxy.cfg.in" "$dir/haproxy.cfg" TMP="$dir" LISTEN_PORT="$port" \
        BACKEND_PORT="$BACKEND_PORT" MAXCONN=4000
      setsid taskset -c 1 haproxy -f "$dir/haproxy.cfg" >"$dir/log" 2>&1 &
      ;;
    *) die "unknown proxy $proxy" ;;
  esac
  PIDS+=($!)
  pid=${PIDS[-1]}
  url="http://127.0.0.1:$port/_sample/bytes?n=128"
  wait_http "$url" "$pid" "$dir/log"
  # The process that does the work: the worker a master started (nginx), else the one started.
  target=$(pgrep -P "$pid" | head -1 || true)
  [ -n "$target" ] || target=$pid
  taskset -c 0 wrk -t1 -c"$CONNS" -d2 "$url" >/dev/null  # warm-up
  args=(-x, -e raw_syscalls:sys_enter)
  for e in "${EVENTS[@]}"; do args+=(-e "syscalls:sys_enter_$e"); done
  args+=(-e syscalls:sys_exit_recvfrom --filter 'ret == -11' -e syscalls:sys_exit_read --filter 'ret == -11')
  taskset -c 0 wrk -t1 -c"$CONNS" -d$((DURATION + 2)) "$url" >"$dir/wrk.txt" &
  wrk_pid=$!
  sleep 1
  perf stat "${args[@]}" -p "$target" -o "$dir/perf.csv" -- sleep "$DURATION" 2>/dev/null
  wait "$wrk_pid"
  rps=$(awk '/Requests\/sec/ {print $2}' "$dir/wrk.txt")
  python3 - "$dir/perf.csv" "$rps" "$DURATION" "$proxy" "${EVENTS[@]}" <<'EOF'
import sys
path, rps, duration, proxy, events = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5:]
counts = {}
eagain = 0
for line in open(path):
    parts = line.strip().split(",")
    if len(parts) < 3 or not parts[0].replace(".", "").isdigit():
        continue
    name = parts[2]
    n = float(parts[0])
    if name.startswith("syscalls:sys_exit_"):
        eagain += n
    else:
        counts[name.split("sys_enter_")[-1] if "sys_enter_" in name else "total"] = n
reqs = rps * duration
listed = [counts.get(e, 0) for e in events]
total = counts.get("total", 0)
row = [total] + listed + [total - sum(listed), eagain]
print(f"{proxy:<8} {rps:9.0f}" + "".join(f" {v / reqs:9.2f}" for v in row))
EOF
  stop_pid "$pid"
done
