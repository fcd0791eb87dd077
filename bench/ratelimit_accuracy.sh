#!/usr/bin/env bash
# Rate-limit accuracy: how close the admitted rate comes to a rule's limit under overload.
# Node scope: one gateway (workers: 2) with one rule (one key for every request), offered
# OVERLOAD x LIMIT req/s by paced wrk connections. Cluster scope: a redis-server and two gateways
# with the same cluster-scope rule, the load split across both. Admitted/s is read from the
# gateways' /metrics (sluice_ratelimit_requests_total{result="allowed"}) at the start and the end
# of the measured interval, while the load runs, over the time between the two reads.
# See docs/benchmarks.md ("Traffic governance") for the figures and how to read them.
# shellcheck disable=SC2317  # cleanup is reached through a trap
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB=$ROOT/bench/lib
CONF=$ROOT/bench/conf

usage() {
  cat <<EOF
usage: bench/ratelimit_accuracy.sh [options]

  --duration SEC      measured seconds per run (default 10), counted exactly from the gateways'
                      access logs (request start times) from the first /metrics read on
  --warmup SEC        seconds of load before the measured interval starts (default 2)
  --limit N           the rule's limit in requests per 1s (default 1000)
  --burst N           token bucket burst (default 10; small, so that it does not count)
  --overload X        offered load as a multiple of the limit (default 5)
  --pace-ms MS        mean pause of each wrk connection after each response (default 20); the
                      number of connections is overload x limit x pace / 1000
  --fixed-pace        pause exactly --pace-ms (bench/lib/paced.lua) instead of a random pause
                      with that mean (bench/lib/jittered.lua): the connections then stay in step
                      and send in clumps, which a token bucket with a small burst admits less of
  --algorithms LIST   comma-separated: token_bucket,sliding_window (default: both)
  --scopes LIST       comma-separated: node,cluster (default: both)
  --repeat N          runs of each case (default 1)
  --sluice PATH       sluice binary (default: \$SLUICE_BIN or build/sluice)
  --redis-server PATH redis-server binary for the cluster runs (default: redis-server on PATH)
  --out FILE          markdown results (default bench/results/ratelimit-accuracy.md; raw runs
                      beside it as .jsonl)
  --strict            exit 1 when a run misses its target (node ±1%, cluster ±5% of the limit)
  --keep-tmp          keep configs and logs of the run (they are always kept on failure)
  -h, --help          this text
EOF
}

# ---------------------------------------------------------------------------------------------
# options

DURATION=10
WARMUP=2
LIMIT=1000
BURST=10
OVERLOAD=5
PACE_MS=20
LUA=jittered.lua
ALGORITHMS=token_bucket,sliding_window
SCOPES=node,cluster
REPEAT=1
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
REDIS_SERVER=redis-server
OUT=$ROOT/bench/results/ratelimit-accuracy.md
STRICT=0
KEEP_TMP=0
COMMAND_LINE="bench/ratelimit_accuracy.sh $*"

die() { echo "ratelimit_accuracy: $*" >&2; exit 1; }
need_arg() { [ $# -ge 2 ] || die "$1 needs a value"; }

while [ $# -gt 0 ]; do
  case $1 in
    --duration) need_arg "$@"; DURATION=$2; shift 2 ;;
    --warmup) need_arg "$@"; WARMUP=$2; shift 2 ;;
    --limit) need_arg "$@"; LIMIT=$2; shift 2 ;;
    --burst) need_arg "$@"; BURST=$2; shift 2 ;;
    --overload) need_arg "$@"; OVERLOAD=$2; shift 2 ;;
    --pace-ms) need_arg "$@"; PACE_MS=$2; shift 2 ;;
    --fixed-pace) LUA=paced.lua; shift ;;
    --algorithms) need_arg "$@"; ALGORITHMS=$2; shift 2 ;;
    --scopes) need_arg "$@"; SCOPES=$2; shift 2 ;;
    --repeat) need_arg "$@"; REPEAT=$2; shift 2 ;;
    --sluice) need_arg "$@"; SLUICE_BIN=$2; shift 2 ;;
    --redis-server) need_arg "$@"; REDIS_SERVER=$2; shift 2 ;;
    --out) need_arg "$@"; OUT=$2; shift 2 ;;
    --strict) STRICT=1; shift ;;
    --keep-tmp) KEEP_TMP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

for v in DURATION WARMUP LIMIT BURST PACE_MS REPEAT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "--$(echo "$v" | tr 'A-Z_' 'a-z-') must be a whole number, got '${!v}'"
done
[[ $OVERLOAD =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--overload must be a number, got '$OVERLOAD'"
[ "$DURATION" -ge 1 ] || die "--duration must be at least 1"
[ "$LIMIT" -ge 1 ] || die "--limit must be at least 1"
[ "$BURST" -ge 1 ] || die "--burst must be at least 1"
[ "$PACE_MS" -ge 1 ] || die "--pace-ms must be at least 1"
[ "$REPEAT" -ge 1 ] || die "--repeat must be at least 1"
IFS=',' read -ra ALGORITHM_LIST <<<"$ALGORITHMS"
for a in "${ALGORITHM_LIST[@]}"; do
  case $a in token_bucket|sliding_window) ;; *) die "unknown algorithm '$a' (token_bucket, sliding_window)" ;; esac
done
IFS=',' read -ra SCOPE_LIST <<<"$SCOPES"
for s in "${SCOPE_LIST[@]}"; do
  case $s in node|cluster) ;; *) die "unknown scope '$s' (node, cluster)" ;; esac
done
[[ ",$SCOPES," == *",cluster,"* ]] && NEED_REDIS=1 || NEED_REDIS=0

# Total paced connections for OVERLOAD x LIMIT req/s (each sends about 1000 / PACE_MS req/s).
CONNS=$(python3 -c "import math; print(max(1, round($OVERLOAD * $LIMIT * $PACE_MS / 1000)))")
OFFERED_TARGET=$(python3 -c "print(round($OVERLOAD * $LIMIT))")

# ---------------------------------------------------------------------------------------------
# preflight

missing=()
for tool in wrk python3 curl setsid; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ "$NEED_REDIS" = 0 ] || command -v "$REDIS_SERVER" >/dev/null 2>&1 || missing+=("$REDIS_SERVER")
[ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]}. Install them with 'make deps' (scripts/install-deps.sh)."
[ -x "$SLUICE_BIN" ] || die "$SLUICE_BIN not found (run 'make build' or pass --sluice)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-rlacc.XXXXXX")
RESULTS=$TMP/results.jsonl
: >"$RESULTS"
echo "ratelimit_accuracy: configs and logs in $TMP"

# ---------------------------------------------------------------------------------------------
# processes: every child runs in its own process group (setsid) so that it can be stopped whole.

PIDS=()
OK=0
# shellcheck disable=SC2034  # the messages of lib/procs.sh use it
NAME=ratelimit_accuracy
# shellcheck source-path=SCRIPTDIR source=lib/procs.sh
source "$LIB/procs.sh"

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [ "$OK" = 1 ] && [ "$KEEP_TMP" = 0 ]; then
    rm -rf "$TMP"
  else
    echo "ratelimit_accuracy: configs and logs kept in $TMP" >&2
  fi
}
trap cleanup EXIT
trap 'echo "ratelimit_accuracy: interrupted" >&2; exit 130' INT TERM

# pause SECONDS: sleep in the background, so that a signal to this script is handled at once.
pause() {
  sleep "$1" &
  wait "$!"
}

# metric_value ADMIN_PORT NAME: the value of an unlabelled metric (empty when absent).
metric_value() {
  curl -sf --max-time 2 "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n {print $2; exit}'
}

# ---------------------------------------------------------------------------------------------
# backend and redis

BACKEND_PORT=$(free_port)
spawn all "$TMP/backend.log" "$SLUICE_BIN" sample-service --listen "127.0.0.1:$BACKEND_PORT" \
  --name bench --city a --workers 1
wait_http "http://127.0.0.1:$BACKEND_PORT/healthz" "$SPAWNED_PID" "$TMP/backend.log" ||
  die "sample-service did not start"
echo "ratelimit_accuracy: backend (sample-service) on 127.0.0.1:$BACKEND_PORT"

REDIS_PORT=""
if [ "$NEED_REDIS" = 1 ]; then
  REDIS_PORT=$(free_port)
  spawn all "$TMP/redis.log" "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --dir "$TMP"
  REDIS_PID=$SPAWNED_PID
  for ((i = 0; i < 100; i++)); do
    kill -0 "$REDIS_PID" 2>/dev/null || { tail -n 20 "$TMP/redis.log" >&2; die "redis-server exited"; }
    grep -q 'Ready to accept connections' "$TMP/redis.log" && break
    sleep 0.05
  done
  grep -q 'Ready to accept connections' "$TMP/redis.log" || die "redis-server did not start (see $TMP/redis.log)"
  echo "ratelimit_accuracy: redis-server on 127.0.0.1:$REDIS_PORT"
fi

# ---------------------------------------------------------------------------------------------
# one run

RUN_SEQ=0
GW_PIDS=()
GW_ADMIN=()
GW_PORTS=()

# start_gateways N SCOPE ALGORITHM RULE DIR
start_gateways() {
  local n=$1 scope=$2 alg=$3 rule=$4 dir=$5 g limit_spec redis_line port admin id
  GW_PIDS=(); GW_ADMIN=(); GW_PORTS=()
  if [ "$alg" = token_bucket ]; then
    limit_spec="{requests: $LIMIT, per: 1s, burst: $BURST}"
  else
    limit_spec="{requests: $LIMIT, per: 1s}"
  fi
  redis_line="# no redis: node scope"
  if [ "$scope" = cluster ]; then
    # A fresh key prefix per run: nothing of an earlier run (buckets, windows, gateway set) counts.
    redis_line="redis: {address: \"127.0.0.1:$REDIS_PORT\", timeout: 20ms, on_error: local_fallback, key_prefix: \"bench-$RUN_SEQ:\"}"
  fi
  for ((g = 0; g < n; g++)); do
    id=gw-$((g + 1))
    port=$(free_port)
    admin=$(free_port)
    render "$CONF/sluice-ratelimit.yaml.in" "$dir/$id.yaml" NODE_ID="$id" LISTEN_PORT="$port" \
      ADMIN_PORT="$admin" BACKEND_PORT="$BACKEND_PORT" RULE="$rule" LIMIT="$limit_spec" \
      ALGORITHM="$alg" SCOPE="$scope" REDIS="$redis_line" ACCESS_LOG="$dir/$id.access.log"
    spawn all "$dir/$id.log" "$SLUICE_BIN" gateway --config "$dir/$id.yaml"
    GW_PIDS+=("$SPAWNED_PID"); GW_ADMIN+=("$admin"); GW_PORTS+=("$port")
  done
  for ((g = 0; g < n; g++)); do
    wait_http "http://127.0.0.1:${GW_ADMIN[$g]}/ready" "${GW_PIDS[$g]}" "$dir/gw-$((g + 1)).log" ||
      die "gateway gw-$((g + 1)) did not start (see $dir)"
    wait_http "http://127.0.0.1:${GW_PORTS[$g]}/_sample/bytes?n=128" "${GW_PIDS[$g]}" "$dir/gw-$((g + 1)).log" ||
      die "gateway gw-$((g + 1)) does not proxy (see $dir)"
  done
  if [ "$scope" = cluster ]; then
    # Both gateways must see Redis and each other before the load starts (heartbeats every 1 s).
    local i up seen ok
    for ((i = 0; i < 100; i++)); do
      ok=1
      for ((g = 0; g < n; g++)); do
        up=$(metric_value "${GW_ADMIN[$g]}" sluice_redis_up || true)
        seen=$(metric_value "${GW_ADMIN[$g]}" sluice_ratelimit_cluster_gateways || true)
        [ "${up:-0}" = 1 ] && [ "${seen:-0}" = "$n" ] || ok=0
      done
      [ "$ok" = 1 ] && break
      sleep 0.1
    done
    [ "$ok" = 1 ] || die "the gateways did not see Redis and $n gateways within 10 s (redis_up=${up:-?}, gateways=${seen:-?}; see $dir)"
  fi
}

# usec: $EPOCHREALTIME in whole microseconds.
usec() { local t=$EPOCHREALTIME; echo $((10#${t//[.,]/})); }

# scrape DIR TAG: saves every gateway's /metrics as DIR/metrics-TAG-G.txt; sets SCRAPE_US to the
# middle of the reads (microseconds). Nothing else runs between the reads: they take a few ms.
scrape() {
  local dir=$1 tag=$2 t0 t1 g
  t0=$(usec)
  for ((g = 0; g < ${#GW_ADMIN[@]}; g++)); do
    curl -sf --max-time 2 -o "$dir/metrics-$tag-$g.txt" "http://127.0.0.1:${GW_ADMIN[$g]}/metrics" ||
      die "could not read /metrics of gw-$((g + 1))"
  done
  t1=$(usec)
  SCRAPE_US=$(((t0 + t1) / 2))
}

# run_case SCOPE ALGORITHM ROUND
run_case() {
  local scope=$1 alg=$2 round=$3 n=1 dir rule g per_gw wrk_pids=() wrk_outs=() rc=0 total
  [ "$scope" = cluster ] && n=2
  RUN_SEQ=$((RUN_SEQ + 1))
  dir=$TMP/run-$RUN_SEQ-$scope-$alg
  mkdir -p "$dir"
  rule="acc-${alg//_/-}"
  start_gateways "$n" "$scope" "$alg" "$rule" "$dir"

  # The load runs from before the first read to after the last; the measured interval lies
  # inside it, so neither the start-up of wrk nor its end is counted.
  per_gw=$(((CONNS + n - 1) / n))
  total=$((WARMUP + DURATION + 2))
  for ((g = 0; g < n; g++)); do
    setsid env PACE_MS="$PACE_MS" wrk -t1 "-c$per_gw" "-d${total}s" -s "$LIB/$LUA" \
      "http://127.0.0.1:${GW_PORTS[$g]}/_sample/bytes?n=128" >"$dir/wrk-$g.txt" 2>&1 </dev/null &
    wrk_pids+=("$!"); PIDS+=("$!")
    wrk_outs+=("wrk_out$g=$dir/wrk-$g.txt")
  done
  pause "$WARMUP"
  local t0 t1 a0 r0 f0 a1 r1 f1 la lr pid rem counts alive=1
  scrape "$dir" before
  t0=$SCRAPE_US
  # Sleep until DURATION after the first read, whatever the read took.
  rem=$((DURATION * 1000000 - ($(usec) - t0)))
  [ "$rem" -gt 0 ] || rem=0
  pause "$((rem / 1000000)).$(printf '%06d' $((rem % 1000000)))"
  scrape "$dir" after
  t1=$SCRAPE_US
  for pid in "${wrk_pids[@]}"; do kill -0 "$pid" 2>/dev/null || alive=0; done
  for pid in "${wrk_pids[@]}"; do
    wait "$pid" || rc=$?
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
  done
  for pid in "${GW_PIDS[@]}"; do stop_pid "$pid"; done
  [ "$rc" = 0 ] || die "wrk failed (exit $rc, see $dir)"
  [ "$alive" = 1 ] || die "the load ended before the second read of /metrics (machine too busy?); see $dir"
  counts=$(python3 "$LIB/ratelimit_acc.py" counters "$rule" "$dir"/metrics-before-*.txt)
  read -r a0 r0 f0 <<<"$counts"
  counts=$(python3 "$LIB/ratelimit_acc.py" counters "$rule" "$dir"/metrics-after-*.txt)
  read -r a1 r1 f1 <<<"$counts"
  # The same over exactly DURATION seconds from the first read, by the access logs' request times.
  counts=$(python3 "$LIB/ratelimit_acc.py" logcount "$t0" "$DURATION" "$dir"/gw-*.access.log)
  read -r la lr <<<"$counts"
  python3 "$LIB/ratelimit_acc.py" record "$RESULTS" scope="$scope" algorithm="$alg" limit="$LIMIT" \
    log_allowed="$la" log_rejected="$lr" duration="$DURATION" \
    gateways="$n" round="$round" t0="$((t0 / 1000000)).$(printf '%06d' $((t0 % 1000000)))" \
    t1="$((t1 / 1000000)).$(printf '%06d' $((t1 % 1000000)))" a0="$a0" a1="$a1" r0="$r0" r1="$r1" \
    f0="$f0" f1="$f1" "${wrk_outs[@]}"
}

# ---------------------------------------------------------------------------------------------
# main

echo "ratelimit_accuracy: limit $LIMIT/s, offered about $OFFERED_TARGET/s ($CONNS connections," \
  "$([ "$LUA" = paced.lua ] && echo "fixed ${PACE_MS} ms pause" || echo "random pause, mean ${PACE_MS} ms")), ${DURATION} s measured after ${WARMUP} s of load"
for ((round = 1; round <= REPEAT; round++)); do
  for scope in "${SCOPE_LIST[@]}"; do
    for alg in "${ALGORITHM_LIST[@]}"; do
      run_case "$scope" "$alg" "$round"
    done
  done
done

META=$TMP/meta.txt
{
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine=$(nproc) CPUs, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)"
  echo "kernel=$(uname -r)"
  echo "tools=$(wrk -v 2>&1 | head -n 1 | awk '{print "wrk " $2}')$([ "$NEED_REDIS" = 1 ] && "$REDIS_SERVER" --version | awk '{print ", redis-server " $3}' | sed 's/v=//')"
  echo "sluice=$SLUICE_BIN ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ', uncommitted changes'))"
  echo "setup=gateways with workers: 2, one rule (key: [], limit $LIMIT per 1s, token bucket burst $BURST); offered about ${OFFERED_TARGET}/s by $CONNS wrk connections ($([ "$LUA" = paced.lua ] && echo "fixed ${PACE_MS} ms pause, bench/lib/paced.lua" || echo "random pause with a mean of ${PACE_MS} ms, bench/lib/jittered.lua"); split across the gateways in cluster runs); ${DURATION} s measured after ${WARMUP} s of load"
  echo "command=$COMMAND_LINE"
} >"$META"

mkdir -p "$(dirname "$OUT")"
echo
report_rc=0
python3 "$LIB/ratelimit_acc.py" report "$RESULTS" "$META" "$OUT" || report_rc=$?
cp "$RESULTS" "${OUT%.md}.jsonl"
echo "ratelimit_accuracy: wrote $OUT and ${OUT%.md}.jsonl"
OK=1
if [ "$report_rc" -ne 0 ] && [ "$STRICT" = 1 ]; then
  exit 1
fi
exit 0
