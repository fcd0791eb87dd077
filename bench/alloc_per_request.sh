#!/usr/bin/env bash
# Allocations and CPU per proxied request of one sluice binary (docs/benchmarks.md, "Allocations
# per request"): a one-worker gateway in front of a sample service, wrk keep-alive load on
# /_sample/bytes?n=128 (the ka-128 scenario of proxy_bench.sh).
#   malloc: mallocs per request, counted exactly by an LD_PRELOAD counter (bench/lib/malloc_count.c),
#           as the slope between a 1 s and a SECONDS run (what wrk's connections cost cancels out)
#   cpu:    the gateway's task-clock (perf stat) over the run / requests served
# usage: bench/alloc_per_request.sh BIN malloc|cpu [CONNS=64] [SECONDS=5] [IO_BACKEND=auto] [BACKEND_BIN=BIN]
# WRK_HEADERS="name: value;name: value" adds request headers (e.g. the observed-traffic ones:
# "x-sluice-caller: web;x-channel: mobile").
set -euo pipefail
BIN=$1; MODE=$2; CONNS=${3:-64}; SECS=${4:-5}; IOB=${5:-auto}
BACK=${6:-$BIN}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
D=$(mktemp -d)
SO=$D/malloc_count.so
[ "$MODE" = malloc ] && gcc -O2 -shared -fPIC -o "$SO" "$ROOT/bench/lib/malloc_count.c" -ldl -lpthread
port(){ python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
BP=$(port); LP=$(port); AP=$(port)
cat > $D/gw.yaml <<Y
node: {id: bench, city: a, zone: a1}
workers: 1
io_backend: $IOB
listeners: [{name: public, address: "127.0.0.1:$LP"}]
admin: {address: "127.0.0.1:$AP"}
limits: {idle_timeout: 300s}
access_log: {path: off}
services:
  - name: bench
    endpoints: [{address: "127.0.0.1:$BP", city: a, zone: a1, weight: 1}]
    load_balancer: {policy: round_robin}
    timeouts: {connect: 1s, request: 5s}
    max_idle_connections: 128
routes:
  - name: all
    match: {path_prefix: /}
    service: bench
Y
$BACK sample-service --listen 127.0.0.1:$BP --name bench --city a --workers 1 >$D/backend.log 2>&1 &
BPID=$!
if [ "$MODE" = malloc ]; then
  MALLOC_COUNT_FILE=$D/count LD_PRELOAD=$SO $BIN gateway --config $D/gw.yaml >$D/gw.log 2>&1 &
else
  $BIN gateway --config $D/gw.yaml >$D/gw.log 2>&1 &
fi
GPID=$!
trap 'kill $GPID $BPID 2>/dev/null; wait 2>/dev/null; rm -rf $D' EXIT
for i in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:$LP/_sample/bytes?n=128 && break; sleep 0.1; done
URL=http://127.0.0.1:$LP/_sample/bytes?n=128
HDR=()
IFS=';' read -r -a _hs <<< "${WRK_HEADERS:-}"
for h in "${_hs[@]}"; do [ -n "$h" ] && HDR+=(-H "$h"); done
wrk() { command wrk "${HDR[@]}" "$@"; }
wrk -t1 -c$CONNS -d2s $URL >/dev/null
if [ "$MODE" = malloc ]; then
  # Two runs of different length: the slope cancels what each of wrk's connections costs
  # (accept, connection object, close), leaving what each request costs.
  run() { sleep 0.2; read m0 f0 < $D/count; wrk -t1 -c$CONNS -d${1}s $URL > $D/wrk.txt; sleep 0.2; read m1 f1 < $D/count;
          echo "$((m1-m0)) $(awk '/requests in/{print $1}' $D/wrk.txt)"; }
  # What the gateway allocates with no traffic (timers, health and stats) is subtracted.
  sleep 0.2; read i0 _ < $D/count; sleep 3; read i1 _ < $D/count
  read ma ra < <(run 1); read mb rb < <(run $SECS)
  python3 -c "
idle = ($i1 - $i0) / 3.0
print(f'mallocs/request {$mb/$rb:.3f} (run of $rb requests); slope {($mb-$ma)/($rb-$ra):.3f}; '
      f'idle {idle:.1f}/s; slope without idle {(($mb-$ma)-idle*($SECS-1))/($rb-$ra):.3f} per request')"
else
  perf stat -e task-clock -p $GPID -x, -o $D/perf.txt -- sleep $((SECS+1)) &
  PP=$!
  sleep 0.5
  wrk -t1 -c$CONNS -d${SECS}s $URL > $D/wrk.txt
  wait $PP
  REQ=$(awk '/requests in/{print $1}' $D/wrk.txt)
  MS=$(awk -F, '/task-clock/{print $1}' $D/perf.txt)
  python3 -c "print(f'cpu_us/request {$MS*1000/$REQ:.2f} requests $REQ req/s {$REQ/$SECS:.0f}')"
fi
