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
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
CONNS=64
DURATION=3
PROXIES=sluice,nginx,haproxy
PIDS=()

die() { echo "$NAME: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --sluice) SLUICE_BIN=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --proxies) PROXIES=$2; shift 2 ;;
    -h | --help) sed -n 2,9p "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
command -v perf >/dev/null || die "perf not found (apt-get install linux-perf)"
command -v wrk >/dev/null || die "wrk not found (scripts/install-deps.sh installs it)"
[ -x "$SLUICE_BIN" ] || die "no sluice binary at $SLUICE_BIN (make build)"
# shellcheck source-path=SCRIPTDIR source=lib/procs.sh
source "$LIB/procs.sh"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-syscalls.XXXXXX")
cleanup() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  rm -rf "$TMP"
}
trap cleanup EXIT

# What start_proxy (lib/procs.sh) needs: the proxies run as in proxy_bench.sh.
PROXY_CPU=1
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
HAPROXY_MAXCONN=4096
BACKEND_PORT=$(free_port)
spawn 0 "$TMP/backend.log" "$SLUICE_BIN" sample-service --listen "127.0.0.1:$BACKEND_PORT" \
  --name b --city a --workers 1
wait_http "http://127.0.0.1:$BACKEND_PORT/healthz" "$SPAWNED_PID" "$TMP/backend.log"

EVENTS=(recvfrom sendto read write readv writev epoll_wait epoll_pwait epoll_ctl io_uring_enter)
printf '%-8s %9s' proxy "req/s"
for e in total "${EVENTS[@]}" other EAGAIN; do printf ' %9s' "${e:0:9}"; done
echo "   (per request)"

IFS=, read -r -a LIST <<<"$PROXIES"
for proxy in "${LIST[@]}"; do
  start_proxy "$proxy" "$CONNS" || die "$proxy: $SKIP_REASON"
  pid=$PROXY_PID
  dir=$PROXY_DIR
  url="http://127.0.0.1:$PROXY_PORT/_sample/bytes?n=128"
  # The process that does the work: the worker a master started (nginx), else the one started.
  target=$(pgrep -P "$pid" | head -1 || true)
  [ -n "$target" ] || target=$pid
  taskset -c 0 wrk -t1 -c"$CONNS" -d2 "$url" >/dev/null  # warm-up
  args=(-x "," -e raw_syscalls:sys_enter)
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
row = [total] + listed + [max(total - sum(listed), 0.0), eagain]
print(f"{proxy:<8} {rps:9.0f}" + "".join(f" {v / reqs:9.2f}" for v in row))
EOF
  stop_pid "$pid"
done
