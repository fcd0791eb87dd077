#!/usr/bin/env bash
# Proxy benchmark: wrk against the backend directly, nginx, HAProxy and the sluice gateway, one
# worker each, the proxy alone on one CPU and backend + wrk on another, all in one run. Reports
# req/s, p50/p99, the proxy's busy CPU %, req/s per busy proxy core and ratios to the better peer.
# `sluice-gov` is the same sluice gateway with five rate-limit rules, a circuit breaker and outlier
# detection; it is also reported against plain sluice (the issue 3 overhead target).
# See docs/benchmarks.md for what each scenario measures and how to read the figures.
# shellcheck disable=SC2317  # cleanup is reached through a trap
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB=$ROOT/bench/lib
CONF=$ROOT/bench/conf

usage() {
  cat <<EOF
usage: bench/proxy_bench.sh [options]

  --duration SEC      seconds per measured run (default 10)
  --warmup SEC        unmeasured wrk run before each measured one (default 2)
  --repeat N          rounds; proxies run in alternating order per round, medians reported (default 1)
  --quick             only $QUICK_SCENARIOS,
                      3 s each after 1 s warm-up
  --scenarios LIST    comma-separated names or globs (e.g. 'ka-*,idle'); see --list
  --list              print the scenario names and exit
  --proxies LIST      subset of direct,nginx,haproxy,sluice,sluice-gov (default: all);
                      sluice-gov = sluice plus five rate-limit rules, a circuit breaker and
                      outlier detection (bench/conf/sluice-gateway-gov.yaml.in);
                      sluice-dc = sluice with a unit service, shard lookup and locality tiers
                      (bench/conf/sluice-gateway-dc.yaml.in; not in the default list);
                      sluice-epoll = sluice with io_backend: epoll (not in the default list)
  --backend KIND      sluice (sample-service) or nginx (stand-in with fixed bodies);
                      default: sluice when the binary exists, else nginx
  --sluice PATH       sluice binary (default: \$SLUICE_BIN or build/sluice)
  --proxy-cpu N       CPU for the proxy (default 1)
  --load-cpu N        CPU for backend and wrk (default 0)
  --paced-rate R      offered req/s in the paced scenarios (default 20000); each connection
                      pauses round(connections*1000/R) ms after each response
  --idle-conns N      connections held open in the idle scenario (default 10000)
  --out FILE          markdown results (default bench/results/latest.md; raw runs beside it as .jsonl)
  --keep-tmp          keep configs and logs of the run (they are always kept on failure)
  -h, --help          this text

Scenarios: MODE-BODY-cCONNS with MODE ka (keep-alive, flat out), close (Connection: close),
paced (same offered load for all); BODY 128 or 4k; CONNS 64 or 256; pool-128-c64/c256/c1024
(keep-alive flat out, sluice with its default upstream pool; the upstream connections sluice
opened are reported); plus idle (memory per idle keep-alive connection).
EOF
}

# ---------------------------------------------------------------------------------------------
# options

DURATION=10
WARMUP=2
REPEAT=1
QUICK=0
SCENARIO_SPEC=""
PROXIES="direct,nginx,haproxy,sluice,sluice-gov"
BACKEND=auto
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
PROXY_CPU=1
LOAD_CPU=0
PACED_RATE=20000
IDLE_CONNS=10000
OUT=$ROOT/bench/results/latest.md
KEEP_TMP=0
DURATION_SET=0
WARMUP_SET=0
COMMAND_LINE="bench/proxy_bench.sh $*"

ALL_SCENARIOS=()
for mode in ka close paced; do
  for conns in 64 256; do
    for body in 128 4k; do ALL_SCENARIOS+=("$mode-$body-c$conns"); done
  done
done
# pool: keep-alive flat out with every proxy's upstream pool left as a user would run it
# (sluice: no max_idle_connections, the pool follows demand), at up to 1,024 connections.
for conns in 64 256 1024; do ALL_SCENARIOS+=("pool-128-c$conns"); done
ALL_SCENARIOS+=(idle)
QUICK_SCENARIOS="ka-128-c64,ka-4k-c256,close-128-c64,paced-128-c64,idle"

die() { echo "proxy_bench: $*" >&2; exit 1; }
need_arg() { [ $# -ge 2 ] || die "$1 needs a value"; }

while [ $# -gt 0 ]; do
  case $1 in
    --duration) need_arg "$@"; DURATION=$2; DURATION_SET=1; shift 2 ;;
    --warmup) need_arg "$@"; WARMUP=$2; WARMUP_SET=1; shift 2 ;;
    --repeat) need_arg "$@"; REPEAT=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --scenarios) need_arg "$@"; SCENARIO_SPEC=$2; shift 2 ;;
    --list) printf '%s\n' "${ALL_SCENARIOS[@]}"; exit 0 ;;
    --proxies) need_arg "$@"; PROXIES=$2; shift 2 ;;
    --backend) need_arg "$@"; BACKEND=$2; shift 2 ;;
    --sluice) need_arg "$@"; SLUICE_BIN=$2; shift 2 ;;
    --proxy-cpu) need_arg "$@"; PROXY_CPU=$2; shift 2 ;;
    --load-cpu) need_arg "$@"; LOAD_CPU=$2; shift 2 ;;
    --paced-rate) need_arg "$@"; PACED_RATE=$2; shift 2 ;;
    --idle-conns) need_arg "$@"; IDLE_CONNS=$2; shift 2 ;;
    --out) need_arg "$@"; OUT=$2; shift 2 ;;
    --keep-tmp) KEEP_TMP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

if [ "$QUICK" = 1 ]; then # explicit --duration/--warmup/--scenarios still win
  [ "$DURATION_SET" = 1 ] || DURATION=3
  [ "$WARMUP_SET" = 1 ] || WARMUP=1
  [ -n "$SCENARIO_SPEC" ] || SCENARIO_SPEC=$QUICK_SCENARIOS
fi
for v in DURATION WARMUP REPEAT PROXY_CPU LOAD_CPU PACED_RATE IDLE_CONNS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "--$(echo "$v" | tr 'A-Z_' 'a-z-') must be a whole number, got '${!v}'"
done
[ "$DURATION" -ge 1 ] || die "--duration must be at least 1"
[ "$REPEAT" -ge 1 ] || die "--repeat must be at least 1"
[ "$PACED_RATE" -ge 1 ] || die "--paced-rate must be at least 1"
[ "$PROXY_CPU" != "$LOAD_CPU" ] || die "--proxy-cpu and --load-cpu must differ"

SCENARIOS=()
if [ -z "$SCENARIO_SPEC" ]; then
  SCENARIOS=("${ALL_SCENARIOS[@]}")
else
  IFS=',' read -ra patterns <<<"$SCENARIO_SPEC"
  for pat in "${patterns[@]}"; do
    matched=0
    for sc in "${ALL_SCENARIOS[@]}"; do
      # shellcheck disable=SC2053  # glob match on purpose
      if [[ $sc == $pat ]]; then
        matched=1
        [[ " ${SCENARIOS[*]} " == *" $sc "* ]] || SCENARIOS+=("$sc")
      fi
    done
    [ "$matched" = 1 ] || die "no scenario matches '$pat' (see --list)"
  done
fi

IFS=',' read -ra PROXY_LIST <<<"$PROXIES"
for p in "${PROXY_LIST[@]}"; do
  case $p in
    direct|nginx|haproxy|sluice|sluice-gov|sluice-dc|sluice-epoll) ;;
    *) die "unknown proxy '$p' (direct, nginx, haproxy, sluice, sluice-gov, sluice-dc, sluice-epoll)" ;;
  esac
done
has_proxy() { [[ ",$PROXIES," == *",$1,"* ]]; }

HAVE_SLUICE=0
[ -x "$SLUICE_BIN" ] && HAVE_SLUICE=1
case $BACKEND in
  auto) if [ "$HAVE_SLUICE" = 1 ]; then BACKEND=sluice; else BACKEND=nginx; fi ;;
  sluice) [ "$HAVE_SLUICE" = 1 ] || die "--backend sluice: $SLUICE_BIN not found (run make build)" ;;
  nginx) ;;
  *) die "--backend must be sluice or nginx" ;;
esac

# ---------------------------------------------------------------------------------------------
# preflight: tools, CPUs, file descriptors

PATH=$PATH:/usr/sbin # nginx and haproxy live there; not on every user's PATH
missing=()
for tool in wrk taskset python3 curl setsid pgrep; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "$BACKEND" = nginx ] || has_proxy nginx; then
  command -v nginx >/dev/null 2>&1 || missing+=(nginx)
fi
if has_proxy haproxy; then
  command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
fi
if [ ${#missing[@]} -gt 0 ]; then
  die "missing tools: ${missing[*]}. Install them with 'make deps' (scripts/install-deps.sh), or leave a peer out with --proxies."
fi
for cpu in "$PROXY_CPU" "$LOAD_CPU"; do
  taskset -c "$cpu" true 2>/dev/null || die "CPU $cpu is not available (nproc: $(nproc)); choose --proxy-cpu/--load-cpu"
done
[ "$(nproc)" -ge 2 ] || echo "proxy_bench: warning: fewer than 2 CPUs; the proxy shares its CPU with the load" >&2

# Every child inherits this: the idle scenario needs one descriptor per held connection on the
# client and on the proxy side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
if [ $((IDLE_CONNS + 1024)) -gt "$NOFILE" ]; then
  echo "proxy_bench: warning: open-file limit $NOFILE; idle scenario reduced to $((NOFILE - 1024)) connections" >&2
  IDLE_CONNS=$((NOFILE - 1024))
fi
HAPROXY_MAXCONN=$((IDLE_CONNS + 512))
CLK_TCK=$(getconf CLK_TCK)

# "busy total" ticks of all CPUs since boot.
cpu_stat_all() {
  local name user nice system idle iowait irq softirq steal rest
  read -r name user nice system idle iowait irq softirq steal rest </proc/stat
  echo "$((user + nice + system + irq + softirq + steal)) $((user + nice + system + idle + iowait + irq + softirq + steal))"
}

# The figures only mean something on an otherwise idle machine: say so up front when it is not.
read -r b0 t0 < <(cpu_stat_all)
sleep 1
read -r b1 t1 < <(cpu_stat_all)
if [ $((t1 - t0)) -gt 0 ] && [ $((100 * (b1 - b0) / (t1 - t0))) -gt 10 ]; then
  echo "proxy_bench: warning: other processes keep the machine $((100 * (b1 - b0) / (t1 - t0)))% busy; figures will be noisy" >&2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
RESULTS=$TMP/results.jsonl
: >"$RESULTS"
echo "proxy_bench: configs and logs in $TMP"

# ---------------------------------------------------------------------------------------------
# processes: every child runs in its own process group (setsid) so that it can be stopped whole.

PIDS=()
OK=0
# shellcheck disable=SC2034  # the messages of lib/procs.sh use it
NAME=proxy_bench
# shellcheck source-path=SCRIPTDIR source=lib/procs.sh
source "$LIB/procs.sh"
WRK_PID=""

cleanup() {
  local pid
  if [ -n "$WRK_PID" ]; then kill "$WRK_PID" 2>/dev/null || true; fi
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [ "$OK" = 1 ] && [ "$KEEP_TMP" = 0 ]; then
    rm -rf "$TMP"
  else
    echo "proxy_bench: configs and logs kept in $TMP" >&2
  fi
}
trap cleanup EXIT
trap 'echo "proxy_bench: interrupted" >&2; exit 130' INT TERM

# run_wrk OUT ARGS...: wrk on the load CPU, in the background so that a signal to this script
# is handled at once rather than when wrk finishes.
run_wrk() {
  local out=$1 rc=0
  shift
  taskset -c "$LOAD_CPU" wrk "$@" >"$out" 2>&1 &
  WRK_PID=$!
  wait "$WRK_PID" || rc=$?
  WRK_PID=""
  return "$rc"
}

# The process and its descendants (nginx: master + worker).
pid_tree() {
  local pid=$1 child
  echo "$pid"
  for child in $(pgrep -P "$pid" 2>/dev/null || true); do pid_tree "$child"; done
}

# Sum of utime + stime (clock ticks, all threads) of the given pids.
proc_ticks() {
  local total=0 pid line f
  for pid in "$@"; do
    read -r line <"/proc/$pid/stat" 2>/dev/null || continue
    read -ra f <<<"${line##*) }" # fields from 3 (state) on: utime is field 14, stime 15
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

# Sum of VmRSS (KiB) of the given pids.
proc_rss_kib() {
  local total=0 pid key val
  for pid in "$@"; do
    while read -r key val _; do
      [ "$key" = "VmRSS:" ] && total=$((total + val))
    done <"/proc/$pid/status" 2>/dev/null || true
  done
  echo "$total"
}

# cpu_stat N -> "busy total" ticks of CPU N since boot, from /proc/stat.
cpu_stat() {
  local name user nice system idle iowait irq softirq steal rest
  while read -r name user nice system idle iowait irq softirq steal rest; do
    if [ "$name" = "cpu$1" ]; then
      echo "$((user + nice + system + irq + softirq + steal)) $((user + nice + system + idle + iowait + irq + softirq + steal))"
      return
    fi
  done </proc/stat
  echo "0 0"
}

BODY_128=$(head -c 128 /dev/zero | tr '\0' 'x')
BODY_1K=$(head -c 1024 /dev/zero | tr '\0' 'x')

# ---------------------------------------------------------------------------------------------
# backend

BACKEND_PID=""
BACKEND_PORT=""
start_backend() {
  local dir=$TMP/backend
  mkdir -p "$dir"
  BACKEND_PORT=$(free_port)
  case $BACKEND in
    nginx)
      render "$CONF/nginx-backend.conf.in" "$dir/nginx.conf" TMP="$dir" LISTEN_PORT="$BACKEND_PORT" \
        NOFILE="$NOFILE" WORKER_CONNECTIONS=$((NOFILE - 64)) BODY_128="$BODY_128" BODY_1K="$BODY_1K"
      spawn "$LOAD_CPU" "$dir/stdout.log" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
      ;;
    sluice)
      spawn "$LOAD_CPU" "$dir/stdout.log" "$SLUICE_BIN" sample-service --listen "127.0.0.1:$BACKEND_PORT" \
        --name bench --city a --workers 1
      ;;
  esac
  BACKEND_PID=$SPAWNED_PID
  wait_http "http://127.0.0.1:$BACKEND_PORT/healthz" "$BACKEND_PID" "$dir/stdout.log" ||
    die "backend ($BACKEND) did not start"
  if ! check_body "http://127.0.0.1:$BACKEND_PORT/_sample/bytes?n=128" 128 ||
    ! check_body "http://127.0.0.1:$BACKEND_PORT/_sample/bytes?n=4096" 4096; then
    die "backend ($BACKEND) does not serve /_sample/bytes?n=128 and ?n=4096 with exact bodies"
  fi
  echo "proxy_bench: backend $BACKEND on 127.0.0.1:$BACKEND_PORT (CPU $LOAD_CPU), pid $BACKEND_PID"
}

# ---------------------------------------------------------------------------------------------
# proxies

RUN_SEQ=0
PROXY_PID=""
PROXY_PORT=""
PROXY_DIR=""
SKIP_REASON=""

# ---------------------------------------------------------------------------------------------
# scenarios

skip() { # SCENARIO PROXY ROUND REASON
  python3 "$LIB/benchlib.py" record-skip "$RESULTS" scenario="$1" proxy="$2" round="$3" reason="$4"
  echo "  $2: $4"
  KEEP_TMP=1 # the reason points at logs in $TMP
}

# run_load SCENARIO PROXY ROUND
run_load() {
  local sc=$1 proxy=$2 round=$3 mode body conns n port pids pace=0 wrk_args=() lua=$LIB/stats.lua
  IFS=- read -r mode body conns <<<"$sc"
  conns=${conns#c}
  n=128
  [ "$body" = 4k ] && n=4096
  if [ "$proxy" = direct ]; then
    port=$BACKEND_PORT
    pids=$(pid_tree "$BACKEND_PID")
    RUN_SEQ=$((RUN_SEQ + 1))
    PROXY_DIR=$TMP/run-$RUN_SEQ-direct
    mkdir -p "$PROXY_DIR"
  else
    # pool: sluice runs without max_idle_connections (its default pool); nginx keeps `keepalive
    # CONNS` idle upstream connections (it has no upstream keep-alive at all by default) and
    # HAProxy its default idle pool with `http-reuse always`: both keep every connection they may
    # reuse, which is what the default sluice pool is measured against.
    local pool_arg=sized
    [ "$mode" = pool ] && pool_arg=default
    if ! start_proxy "$proxy" "$conns" "$pool_arg"; then
      skip "$sc" "$proxy" "$round" "$SKIP_REASON"
      return 0
    fi
    port=$PROXY_PORT
    pids=$(pid_tree "$PROXY_PID")
  fi
  wrk_args=(-t1 "-c$conns" --latency)
  case $mode in
    close) wrk_args+=(-H "Connection: close") ;;
    paced)
      pace=$(((conns * 1000 + PACED_RATE / 2) / PACED_RATE))
      [ "$pace" -ge 1 ] || pace=1
      lua=$LIB/paced.lua
      ;;
  esac
  wrk_args+=(-s "$lua")
  local url="http://127.0.0.1:$port/_sample/bytes?n=$n"
  if [ "$WARMUP" -gt 0 ]; then
    PACE_MS=$pace run_wrk "$PROXY_DIR/warmup.txt" "${wrk_args[@]}" "-d${WARMUP}s" "$url" || true
  fi

  local t0 t1 ticks0 ticks1 l0 l1 p0 p1 rc=0
  # shellcheck disable=SC2086  # pids is a list
  {
    l0=$(cpu_stat "$LOAD_CPU"); p0=$(cpu_stat "$PROXY_CPU")
    ticks0=$(proc_ticks $pids); t0=$EPOCHREALTIME
  }
  PACE_MS=$pace run_wrk "$PROXY_DIR/wrk.txt" "${wrk_args[@]}" "-d${DURATION}s" "$url" || rc=$?
  # shellcheck disable=SC2086
  {
    t1=$EPOCHREALTIME; ticks1=$(proc_ticks $pids)
    l1=$(cpu_stat "$LOAD_CPU"); p1=$(cpu_stat "$PROXY_CPU")
  }
  # New upstream connections over the whole run (warm-up included), from sluice's own metric.
  local opened=""
  if [[ $proxy == sluice* ]]; then
    opened=$(curl -sf --max-time 5 "http://127.0.0.1:$PROXY_ADMIN_PORT/metrics" |
      awk '/^sluice_upstream_connections_opened_total/ {n += $NF} END {if (NR) printf "%d", n}') || opened=""
  fi
  if [ "$proxy" != direct ]; then stop_pid "$PROXY_PID"; fi
  if [ "$rc" -ne 0 ]; then
    skip "$sc" "$proxy" "$round" "wrk failed (exit $rc, see $PROXY_DIR/wrk.txt)"
    return 0
  fi
  local wall lb0 lt0 lb1 lt1 pb0 pt0 pb1 pt1
  wall=$(python3 -c "print($t1 - $t0)")
  read -r lb0 lt0 <<<"$l0"; read -r lb1 lt1 <<<"$l1"
  read -r pb0 pt0 <<<"$p0"; read -r pb1 pt1 <<<"$p1"
  python3 "$LIB/benchlib.py" record "$RESULTS" scenario="$sc" proxy="$proxy" round="$round" \
    mode="$mode" body="$n" conns="$conns" pace_ms="$pace" duration_s="$DURATION" \
    wrk_out="$PROXY_DIR/wrk.txt" cpu_ticks=$((ticks1 - ticks0)) clk_tck="$CLK_TCK" wall_s="$wall" \
    load_busy_d=$((lb1 - lb0)) load_total_d=$((lt1 - lt0)) pcpu_busy_d=$((pb1 - pb0)) pcpu_total_d=$((pt1 - pt0)) \
    ${opened:+upstream_opened="$opened"}
}

# run_idle PROXY ROUND
run_idle() {
  local proxy=$1 round=$2 pids before after client out i held closed
  if ! start_proxy "$proxy" 256; then
    skip idle "$proxy" "$round" "$SKIP_REASON"
    return 0
  fi
  pids=$(pid_tree "$PROXY_PID")
  sleep 0.5
  # shellcheck disable=SC2086
  before=$(proc_rss_kib $pids)
  out=$PROXY_DIR/idle.out
  spawn "$LOAD_CPU" "$out" python3 "$LIB/idle_conns.py" --port "$PROXY_PORT" -n "$IDLE_CONNS" --hold 300
  client=$SPAWNED_PID
  for ((i = 0; i < 1200; i++)); do
    grep -qE '^(held|failed)' "$out" 2>/dev/null && break
    kill -0 "$client" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q '^held' "$out"; then
    stop_pid "$client"
    stop_pid "$PROXY_PID"
    skip idle "$proxy" "$round" "could not hold $IDLE_CONNS connections: $(head -n 3 "$out" | tr '\n' ' ')"
    return 0
  fi
  sleep 1 # let the proxy settle (lazy frees, timers)
  # shellcheck disable=SC2086
  after=$(proc_rss_kib $pids)
  stop_pid "$client"
  stop_pid "$PROXY_PID"
  held=$(awk '/^held/ {print $2}' "$out")
  closed=$(awk '/^closed_by_peer/ {print $2}' "$out")
  python3 "$LIB/benchlib.py" record-idle "$RESULTS" scenario=idle proxy="$proxy" round="$round" \
    held="$held" closed_by_peer="${closed:-unknown}" rss_before_kib="$before" rss_after_kib="$after"
}

# ---------------------------------------------------------------------------------------------
# main

RUN_PROXIES=()
for p in direct nginx haproxy sluice sluice-gov sluice-dc sluice-epoll; do
  has_proxy "$p" || continue
  if [[ $p == sluice* ]] && [ "$HAVE_SLUICE" = 0 ]; then
    echo "proxy_bench: $SLUICE_BIN not found — $p entries skipped (run 'make build')"
    for sc in "${SCENARIOS[@]}"; do
      python3 "$LIB/benchlib.py" record-skip "$RESULTS" scenario="$sc" proxy="$p" round=1 \
        reason="skipped: build/sluice not found"
    done
    continue
  fi
  RUN_PROXIES+=("$p")
done
[ ${#RUN_PROXIES[@]} -gt 0 ] || die "nothing to run"

start_backend

for ((round = 1; round <= REPEAT; round++)); do
  order=("${RUN_PROXIES[@]}")
  if ((round % 2 == 0)); then # alternate the order so no proxy always runs first or last
    order=()
    for ((i = ${#RUN_PROXIES[@]} - 1; i >= 0; i--)); do order+=("${RUN_PROXIES[$i]}"); done
  fi
  for sc in "${SCENARIOS[@]}"; do
    echo "[round $round/$REPEAT] $sc (${order[*]})"
    for p in "${order[@]}"; do
      if [ "$sc" = idle ]; then
        [ "$p" = direct ] && continue
        run_idle "$p" "$round"
      else
        run_load "$sc" "$p" "$round"
      fi
    done
  done
done

META=$TMP/meta.txt
{
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine=$(nproc) CPUs, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)"
  echo "kernel=$(uname -r)"
  echo "versions=$(nginx -v 2>&1 | sed 's/.*version: //'), $(haproxy -v 2>/dev/null | head -n 1 | awk '{print "HAProxy " $3}'), $(wrk -v 2>&1 | head -n 1 | awk '{print "wrk " $2}')"
  if [ "$HAVE_SLUICE" = 1 ]; then
    echo "sluice=$SLUICE_BIN ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ', uncommitted changes'))"
  else
    echo "sluice=not built"
  fi
  echo "backend=$BACKEND$([ "$BACKEND" = nginx ] && echo ' (stand-in: return 200 with a fixed body)')"
  echo "proxy_cpu=$PROXY_CPU"
  echo "load_cpu=$LOAD_CPU"
  echo "duration=$DURATION"
  echo "warmup=$WARMUP"
  echo "repeat=$REPEAT"
  echo "idle_conns=$IDLE_CONNS"
  echo "scenarios=${SCENARIOS[*]}"
  echo "command=$COMMAND_LINE"
} >"$META"

mkdir -p "$(dirname "$OUT")"
echo
python3 "$LIB/benchlib.py" report "$RESULTS" "$META" "$OUT"
if has_proxy sluice && has_proxy sluice-gov; then
  python3 "$LIB/govreport.py" "$RESULTS" "$OUT"
fi
cp "$RESULTS" "${OUT%.md}.jsonl"
echo "proxy_bench: wrote $OUT and ${OUT%.md}.jsonl"
OK=1
