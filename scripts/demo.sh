#!/usr/bin/env bash
# The Sluice demo on one machine: a control plane and two cities, each with sample services
# (accounts x2, payments x1) behind its own gateway. The control plane (examples/control/) holds
# the services, routes and units (examples/control/resources.yaml, applied with `sluice ctl`) and
# the registry: the sample services register themselves there, and both gateways
# (examples/control/gateway-a.yaml, gateway-b.yaml) take their config and endpoints from it.
# accounts is a unit service: customers are split into 100 shards by x-customer-id, city a owns
# 0-49 and city b 50-99, and each gateway forwards the other city's customers to the other
# gateway. Prints what runs where and commands to try (sluice ctl, routing, shard routing, a city
# switchover, a config change and its rollback; change management: a canary release of payments-v2,
# broken on purpose and rolled back by its analysis, a policy that holds payments changes for
# approval and rolls them out city a first, the rollout watched stage by stage), then waits for
# Ctrl-C and stops everything it started. With the control plane, a little traffic goes to
# /api/payments through both gateways, so that the analyses have something to judge.
#   scripts/demo.sh                       interactive (make demo; options: make demo DEMO_ARGS='...')
#   scripts/demo.sh --check               start everything, run the printed commands with assertions
#   scripts/demo.sh --no-control-plane    the gateways read everything from examples/gateway-a.yaml
#                                         and gateway-b.yaml, without a control plane
# shellcheck disable=SC2317  # stop_all and on_exit are reached through traps
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
CHECK=0
OFFSET=0
CP=1

usage() {
  cat <<EOF
usage: scripts/demo.sh [--check] [--no-control-plane] [--port-offset N] [--sluice PATH]

  --check             start everything, run the commands the demo prints and check their results;
                      exit 0 when all pass, 1 otherwise
  --no-control-plane  no control plane: the gateways run from examples/gateway-a.yaml and
                      gateway-b.yaml, with the services' endpoints written in them
  --port-offset N     add N to every port (the configs are copied to the demo's work directory
                      with the ports moved), for when the usual 18080.. ports are taken
  --sluice PATH       sluice binary (default: \$SLUICE_BIN or build/sluice)
EOF
}

while [ $# -gt 0 ]; do
  case $1 in
    --check) CHECK=1; shift ;;
    --control-plane) CP=1; shift ;;
    --no-control-plane) CP=0; shift ;;
    --port-offset) [[ ${2:-} =~ ^[0-9]+$ ]] || { usage >&2; exit 2; }; OFFSET=$2; shift 2 ;;
    --sluice) [ $# -ge 2 ] || { usage >&2; exit 2; }; SLUICE_BIN=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; echo "demo: unknown option: $1" >&2; exit 2 ;;
  esac
done

die() { echo "demo: $*" >&2; exit 1; }

[ -x "$SLUICE_BIN" ] || die "$SLUICE_BIN not found: run 'make build' first ('make demo' builds and runs this)"
# Processes run from $ROOT: a relative binary path is taken from where the script was started.
[[ $SLUICE_BIN == /* ]] || SLUICE_BIN=$PWD/$SLUICE_BIN
for tool in curl python3 setsid; do
  command -v "$tool" >/dev/null 2>&1 || die "missing tool: $tool. Install it with 'make deps' (scripts/install-deps.sh)"
done
(( OFFSET + 18902 <= 65535 )) || die "--port-offset $OFFSET moves ports past 65535"

# A path as printed in the commands to try: relative when the demo was started from $ROOT.
show() { if [ "$PWD" = "$ROOT" ]; then echo "${1#"$ROOT"/}"; else echo "$1"; fi; }

# What runs where. Sample services: id service city zone port.
SERVICES=(
  "a-accounts-1 accounts a a1 18101"
  "a-accounts-2 accounts a a2 18102"
  "a-payments-1 payments a a1 18103"
  "b-accounts-1 accounts b b1 18111"
  "b-accounts-2 accounts b b2 18112"
  "b-payments-1 payments b b1 18113"
)
# With the control plane, a new version of payments for the canary release
# (examples/control/release.yaml); it registers under the name payments-v2.
if [ "$CP" = 1 ]; then SERVICES+=("a-payments-v2 payments-v2 a a1 18104"); fi
# Gateways: id city config listen-port admin-port.
if [ "$CP" = 1 ]; then GW_DIR=examples/control; else GW_DIR=examples; fi
GATEWAYS=(
  "gateway-a a $GW_DIR/gateway-a.yaml 18080 18901"
  "gateway-b b $GW_DIR/gateway-b.yaml 18180 18902"
)
CONTROL_PORT=18700 # the control plane (examples/control/control.yaml)
GW_A=127.0.0.1:$((18080 + OFFSET))
GW_B=127.0.0.1:$((18180 + OFFSET))
ADMIN_A=127.0.0.1:$((18901 + OFFSET))
ADMIN_B=127.0.0.1:$((18902 + OFFSET))
SVC_A1=127.0.0.1:$((18101 + OFFSET)) # a-accounts-1, the target of the fault injection
SVC_PAY_V2=127.0.0.1:$((18104 + OFFSET)) # a-payments-v2, the canary broken on purpose
CP_URL=http://127.0.0.1:$((CONTROL_PORT + OFFSET))

# The demo's ports, as written in the example files.
DEMO_PORTS=()
for s in "${SERVICES[@]}"; do read -r _ _ _ _ port <<<"$s"; DEMO_PORTS+=("$port"); done
for g in "${GATEWAYS[@]}"; do read -r _ _ _ port admin <<<"$g"; DEMO_PORTS+=("$port" "$admin"); done
[ "$CP" = 1 ] && DEMO_PORTS+=("$CONTROL_PORT")

# Every port must be free before anything starts: a leftover demo would answer in our place.
ports=()
for p in "${DEMO_PORTS[@]}"; do ports+=("$((p + OFFSET))"); done
busy=$(python3 - "${ports[@]}" <<'EOF'
import socket, sys
busy = []
for p in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", int(p)))
    except OSError:
        busy.append(p)
    finally:
        s.close()
print(" ".join(busy))
EOF
)
[ -z "$busy" ] || die "port(s) $busy already in use (another demo still running? see 'ss -ltnp'). To move every port: make demo DEMO_ARGS='--port-offset 1000' (or scripts/demo.sh --port-offset 1000)"

# The work directory: logs, and with a control plane its database, admin token and the
# gateways' config caches.
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/sluice-demo.XXXXXX")
TOKEN_FILE=$LOGDIR/admin.token
# Gateways fed by the control plane: a switchover is recorded there too (docs/operations.md).
SWITCH_CP_ARGS=()
SWITCH_CP_TEXT=
if [ "$CP" = 1 ]; then
  SWITCH_CP_ARGS=(--control-plane "$CP_URL" --token-file "$TOKEN_FILE")
  SWITCH_CP_TEXT=" \\
      --control-plane $CP_URL --token-file $TOKEN_FILE"
fi

# demo_file EXAMPLE -> the file to use (absolute). The control plane's examples name the work
# directory /tmp/sluice-demo/; they, and with an offset every example, are copied to the work
# directory with the directory and the ports replaced.
demo_file() {
  local src=$ROOT/$1 out args=() p dir
  if [ "$OFFSET" = 0 ] && ! grep -q '/tmp/sluice-demo/' "$src"; then
    echo "$src"
    return
  fi
  out=$LOGDIR/$(basename "$1")
  for p in "${DEMO_PORTS[@]}"; do args+=(-e "s/127\.0\.0\.1:$p\b/127.0.0.1:$((p + OFFSET))/g"); done
  # shellcheck disable=SC2001  # sed's replacement needs \, & and | escaped; sed does that plainly
  dir=$(sed 's/[\\&|]/\\&/g' <<<"$LOGDIR")
  args+=(-e "s|/tmp/sluice-demo/|$dir/|g")
  sed "${args[@]}" "$src" >"$out"
  echo "$out"
}

# ---------------------------------------------------------------------------------------------
# children: each in its own process group (setsid), stopped as a group on the way out.

declare -A PID_OF=() CONF_OF=()
ORDER=()
RESULT=1

stop_group() { # ID...: SIGTERM to each, then wait up to 5 s for each before SIGKILL
  local id pid i
  for id in "$@"; do
    pid=${PID_OF[$id]}
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for id in "$@"; do
    pid=${PID_OF[$id]}
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

# The control plane goes last, so that the sample services can deregister.
stop_all() {
  local id others=()
  for id in "${ORDER[@]}"; do [ "$id" = control ] || others+=("$id"); done
  [ ${#others[@]} -eq 0 ] || stop_group "${others[@]}"
  [ -z "${PID_OF[control]:-}" ] || stop_group control
}

# traffic: a little steady load on /api/payments through both gateways (10 requests to each, one
# keep-alive curl, then 0.2 s of rest; a few dozen requests a second), so that the analyses of the
# canary release and of the staged rollout have something to judge. Each answer's status goes to
# $LOGDIR/traffic.codes. It ends when traffic.stop appears or the demo is gone.
TRAFFIC_PID=
start_traffic() {
  rm -f "$LOGDIR/traffic.stop"
  local parent=$$
  (
    while [ ! -e "$LOGDIR/traffic.stop" ] && kill -0 "$parent" 2>/dev/null; do
      curl -s --max-time 5 -w '%{stderr}%{http_code}\n' "http://$GW_A/api/payments/[1-10]" \
        "http://$GW_B/api/payments/[1-10]" >/dev/null 2>>"$LOGDIR/traffic.codes"
      sleep 0.2
    done
  ) </dev/null >/dev/null 2>&1 &
  TRAFFIC_PID=$!
}
stop_traffic() {
  [ -n "$TRAFFIC_PID" ] || return 0
  touch "$LOGDIR/traffic.stop"
  local i
  for ((i = 0; i < 60; i++)); do
    kill -0 "$TRAFFIC_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill "$TRAFFIC_PID" 2>/dev/null || true
  wait "$TRAFFIC_PID" 2>/dev/null || true
  TRAFFIC_PID=
}

on_exit() {
  trap - EXIT INT TERM
  stop_traffic
  if [ ${#ORDER[@]} -gt 0 ]; then
    echo "demo: stopping ${#ORDER[@]} process(es)"
    stop_all
  fi
  if [ "$CHECK" = 1 ] && [ "$RESULT" = 0 ]; then
    rm -rf "$LOGDIR"
  else
    echo "demo: logs kept in $LOGDIR"
  fi
}
trap on_exit EXIT
trap 'exit 0' INT # Ctrl-C is how the demo ends
trap 'exit 143' TERM

start() { # ID CMD...
  local id=$1
  shift
  (cd "$ROOT" && exec setsid "$@") >"$LOGDIR/$id.log" 2>&1 </dev/null &
  PID_OF[$id]=$!
  ORDER+=("$id")
}

wait_ready() { # ID URL
  local id=$1 url=$2 i
  for ((i = 0; i < 200; i++)); do
    if ! kill -0 "${PID_OF[$id]}" 2>/dev/null; then
      echo "demo: $id exited during start-up; last lines of $LOGDIR/$id.log:" >&2
      tail -n 20 "$LOGDIR/$id.log" >&2 || true
      exit 1
    fi
    curl -sf -o /dev/null --max-time 1 "$url" && return 0
    sleep 0.1
  done
  echo "demo: $id not ready at $url after 20 s; last lines of $LOGDIR/$id.log:" >&2
  tail -n 20 "$LOGDIR/$id.log" >&2 || true
  exit 1
}

# registered: the ids of the instances registered with the control plane, sorted, on one line
# (from the table of `sluice ctl instances`: SERVICE ID ADDRESS CITY ZONE WEIGHT HEARTBEAT).
registered() {
  "$SLUICE_BIN" ctl instances 2>/dev/null | awk 'NR > 1 && NF >= 7 {print $2}' | sort | tr '\n' ' ' | sed 's/ $//'
}

ALL_IDS=()
for s in "${SERVICES[@]}"; do read -r id _ <<<"$s"; ALL_IDS+=("$id"); done
ALL_IDS_SORTED=$(printf '%s\n' "${ALL_IDS[@]}" | sort | tr '\n' ' ' | sed 's/ $//')

if [ "$CP" = 1 ]; then
  # The control plane, and version 1 of the config: the services, routes and units of both cities.
  CONF_OF[control]=$(demo_file examples/control/control.yaml)
  start control "$SLUICE_BIN" control --config "${CONF_OF[control]}"
  wait_ready control "$CP_URL/ready"
  [ -s "$TOKEN_FILE" ] || die "the control plane wrote no admin token to $TOKEN_FILE; see $LOGDIR/control.log"
  # What the commands to try use, and so does everything below.
  SLUICE_SERVER=$CP_URL
  SLUICE_TOKEN=$(cat "$TOKEN_FILE")
  export SLUICE_SERVER SLUICE_TOKEN
  RESOURCES=$(demo_file examples/control/resources.yaml)
  CHANGE=$(demo_file examples/control/change.yaml)
  POLICY=$(demo_file examples/control/policy.yaml)
  RELEASE=$(demo_file examples/control/release.yaml)
  APPLY_REASON="make demo: services, routes and units of both cities"
  apply_out=$("$SLUICE_BIN" ctl apply -f "$RESOURCES" --reason "$APPLY_REASON" 2>&1) ||
    die "sluice ctl apply -f $RESOURCES failed: $apply_out"
fi

for s in "${SERVICES[@]}"; do
  read -r id name city zone port <<<"$s"
  args=(sample-service --listen "127.0.0.1:$((port + OFFSET))" --name "$name" --city "$city" --zone "$zone"
    --instance "$id" --workers 1)
  [ "$CP" = 0 ] || args+=(--control-plane "$CP_URL" --token-file "$TOKEN_FILE")
  start "$id" "$SLUICE_BIN" "${args[@]}"
done
for s in "${SERVICES[@]}"; do
  read -r id _ _ _ port <<<"$s"
  wait_ready "$id" "http://127.0.0.1:$((port + OFFSET))/healthz"
done
if [ "$CP" = 1 ]; then
  # Gateways started now get every endpoint with their first config.
  for ((i = 0; i < 100; i++)); do
    [ "$(registered)" = "$ALL_IDS_SORTED" ] && break
    sleep 0.1
  done
  [ "$(registered)" = "$ALL_IDS_SORTED" ] ||
    die "after 10 s, registered with the control plane: '$(registered)'; expected '$ALL_IDS_SORTED' (see $LOGDIR/*.log)"
fi
for g in "${GATEWAYS[@]}"; do
  read -r id city config port admin <<<"$g"
  CONF_OF[$id]=$(demo_file "$config")
  start "$id" "$SLUICE_BIN" gateway --config "${CONF_OF[$id]}"
done
for g in "${GATEWAYS[@]}"; do
  read -r id _ _ _ admin <<<"$g"
  wait_ready "$id" "http://127.0.0.1:$((admin + OFFSET))/ready"
done

# ---------------------------------------------------------------------------------------------
# what runs where, and what to try

PID_A=${PID_OF[gateway-a]}
{
  printf '\n%-14s %-5s %-40s %s\n' PROCESS CITY ADDRESS PID
  if [ "$CP" = 1 ]; then
    printf '%-14s %-5s %-40s %s\n' control - "${CP_URL#http://} (store: control.db)" "${PID_OF[control]}"
  fi
  for s in "${SERVICES[@]}"; do
    read -r id name city zone port <<<"$s"
    printf '%-14s %-5s %-40s %s\n' "$id" "$city" "127.0.0.1:$((port + OFFSET)) ($name, zone $zone)" "${PID_OF[$id]}"
  done
  for g in "${GATEWAYS[@]}"; do
    read -r id city config port admin <<<"$g"
    printf '%-14s %-5s %-40s %s\n' "$id" "$city" "127.0.0.1:$((port + OFFSET)) (admin 127.0.0.1:$((admin + OFFSET)))" "${PID_OF[$id]}"
  done
  echo
  if [ "$CP" = 1 ]; then
    echo "Config version 1 applied from $(show "$RESOURCES") (sluice ctl apply);"
    echo "the sample services registered themselves; the gateways took both from the control plane."
    echo "Work directory (a log per process, gateways write their JSON access log there; the control"
    echo "plane's control.db and admin.token; the config files as run): $LOGDIR"
  else
    echo "Logs (one file per process; gateways write their JSON access log there): $LOGDIR"
  fi
}

if [ "$CHECK" = 0 ]; then
  B=$(show "$SLUICE_BIN")
  [ "$CP" = 0 ] || start_traffic
  echo
  echo "Try:"
  if [ "$CP" = 1 ]; then
    cat <<EOF
  # the control plane: paste this first; sluice ctl reads the server and the token from it
  export SLUICE_SERVER=$CP_URL SLUICE_TOKEN=\$(cat $TOKEN_FILE)
  $B ctl get all       # version 1: services (endpoints from the registry), routes, units
  $B ctl instances     # the seven sample services (payments-v2 too), with their city and zone
  $B ctl gateways      # both gateways applied the latest version: health ok
  $B ctl versions
EOF
  fi
  cat <<EOF
  # routing: city a and city b; the JSON answer names the instance that served it
  curl -si http://$GW_A/api/accounts/42
  curl -s  http://$GW_B/api/payments/7
  # no route: a JSON 404 from the gateway itself
  curl -si http://$GW_A/nope
  # admin API
  curl -s http://$ADMIN_A/metrics | grep '^sluice_requests_total'
  curl -s http://$ADMIN_A/stats
  # shard routing: accounts is a unit service; customer 42 is in shard 42, owned by city a, and
  # customer 77 in shard 77, owned by city b. Either gateway serves a customer in its home city
  # (look at "city"): the other one forwards the request there.
  curl -s -H 'x-customer-id: 42' http://$GW_A/api/accounts/42; echo
  curl -s -H 'x-customer-id: 42' http://$GW_B/api/accounts/42; echo
  curl -s -H 'x-customer-id: 77' http://$GW_A/api/accounts/77; echo
  curl -s http://$ADMIN_A/units; echo; curl -s http://$ADMIN_B/units; echo
  # switchover: city a's shards 0-49 move to city b on both gateways at once (two-phase: no
  # request fails); customer 42 is then served in city b, through either gateway
  $B gateway switch --admin $ADMIN_A --admin $ADMIN_B --from a --to b --shards 0-49$SWITCH_CP_TEXT
  curl -s -H 'x-customer-id: 42' http://$GW_A/api/accounts/42; echo
  curl -s http://$ADMIN_A/units; echo
  # and back
  $B gateway switch --admin $ADMIN_A --admin $ADMIN_B --from b --to a --shards 0-49$SWITCH_CP_TEXT
EOF
  if [ "$CP" = 1 ]; then
    cat <<EOF
  # a change through the control plane: payments gets /v2 paths and 3 calls a minute per app
  # (x-app-id); both gateways apply it at once and report it (ctl gateways); then roll it back
  $B ctl diff -f $(show "$CHANGE")
  $B ctl apply -f $(show "$CHANGE") --reason "payments: /v2 paths, 3 a minute per app"
  curl -s http://$GW_B/api/payments/7; echo      # "path":"/v2/payments/7"
  for i in 1 2 3 4; do curl -s -o /dev/null -w '%{http_code} ' -H 'x-app-id: demo' http://$GW_A/api/payments/7; done; echo
  $B ctl versions      # who changed what, and why (the switch above is there too)
  $B ctl rollback 1 --reason "back to version 1"
  # a canary release (docs/changes.md, "Canary releases"): payments-v2 answers 500 to everything
  # on purpose; the release gives it 20% of payments-api, the analysis compares it with payments
  # 2 s later and puts the route back on payments by itself (the demo sends a little traffic to
  # /api/payments through both gateways all along: $(show "$LOGDIR")/traffic.codes)
  curl -s -X POST -d '{"error_rate": 1}' http://$SVC_PAY_V2/_sample/faults; echo
  $B ctl apply -f $(show "$RELEASE") --reason "payments-v2: canary release"
  sleep 5; $B ctl release status payments-v2   # rolled_back, canary at 0%: error_ratio vs stable
  $B ctl events        # release_rolled_back payments-v2, naming the failed check
  $B ctl changes       # the route back on payments: a change by release/payments-v2, to review
  curl -s -X POST -d '{"error_rate": 0}' http://$SVC_PAY_V2/_sample/faults; echo
  # change management (docs/changes.md): payments changes now wait for another operator's
  # approval; the gateways keep the old version until then (ctl changes, ctl change show ID)
  $B ctl apply -f $(show "$POLICY") --reason "payments changes need a second pair of eyes"
  $B ctl apply -f $(show "$CHANGE") --reason "payments: /v2 paths again"   # change N proposed
  $B ctl changes --state proposed
  $B ctl tokens create reviewer --role operator > $LOGDIR/reviewer.token
  $B ctl --token-file $LOGDIR/reviewer.token change approve N --reason "reviewed"   # N: above
  # approved, it rolls out in stages (the policy's rollout): gw-a1 first; gw-b1 keeps the old
  # version until the analysis (3 s of traffic, gw-a1 against gw-b1) passes, then every gateway
  $B ctl rollout status N   # stage 1 of 2: the gateways on each version, the analyses so far
  curl -s http://$GW_A/api/payments/7; echo; curl -s http://$GW_B/api/payments/7; echo
  sleep 6; $B ctl rollout status N   # done: both gateways on it, stage 1's analysis passed
  $B ctl change show N      # who proposed and approved it, the diff, every state
  # reload gateway-a's own file (node, listeners, admin, limits; the rest comes from the control
  # plane): edit $(show "${CONF_OF[gateway-a]}") first to see a change; both ways work
EOF
  else
    cat <<EOF
  # reload the config (edit $(show "${CONF_OF[gateway-a]}") first to see a change); both ways work
EOF
  fi
  cat <<EOF
  kill -HUP $PID_A && curl -s http://$ADMIN_A/ready
  curl -s -X POST http://$ADMIN_A/reload
EOF
  if [ "$CP" = 1 ]; then
    cat <<EOF
  # fault injection: one accounts instance of city a answers 500 to everything; after 3 errors in
  # a row gateway-a leaves it out for 10 s and reports that to the control plane (ctl events)
  curl -s -X POST -d '{"error_rate": 1}' http://$SVC_A1/_sample/faults
  for i in 1 2 3 4 5 6 7 8; do curl -s -o /dev/null -w '%{http_code} ' http://$GW_A/api/accounts/42; done; echo
  curl -s -X POST -d '{"error_rate": 0}' http://$SVC_A1/_sample/faults
  sleep 1; $B ctl events
  # b-payments-1 stops and deregisters: gateway-b sends payments to city a from then on
  kill ${PID_OF[b-payments-1]}; sleep 1; $B ctl instances payments
  curl -s http://$GW_B/api/payments/7; echo      # "city":"a"
EOF
  else
    cat <<EOF
  # fault injection: one accounts instance of city a answers 500 to everything, then recovers
  curl -s -X POST -d '{"error_rate": 1}' http://$SVC_A1/_sample/faults
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code} ' http://$GW_A/api/accounts/42; done; echo
  curl -s -X POST -d '{"error_rate": 0}' http://$SVC_A1/_sample/faults
EOF
  fi
  cat <<EOF
  # drain city b's gateway: it stops taking new connections, finishes in-flight requests, exits
  curl -s -X POST http://$ADMIN_B/drain

Press Ctrl-C to stop everything.
EOF
  declare -A REPORTED=()
  while true; do
    for id in "${ORDER[@]}"; do
      if [ -z "${REPORTED[$id]:-}" ] && ! kill -0 "${PID_OF[$id]}" 2>/dev/null; then
        REPORTED[$id]=1
        echo "demo: $id (pid ${PID_OF[$id]}) exited; log: $LOGDIR/$id.log"
      fi
    done
    sleep 1
  done
fi

# ---------------------------------------------------------------------------------------------
# --check: the commands above, with assertions

# Each check below reports its own outcome; one failing command must not end the run.
set +e
FAILS=0
STATUS=""
BODY=""
HEADERS=""

ok() { echo "ok    $*"; }
fail() {
  echo "FAIL  $*"
  FAILS=$((FAILS + 1))
}

# http METHOD URL [DATA]: sets STATUS, BODY, HEADERS (lower-case names).
http() {
  local method=$1 url=$2 data=${3:-}
  local args=(-s --max-time 5 -X "$method" -D "$LOGDIR/.h" -o "$LOGDIR/.b" -w '%{http_code}')
  [ -n "$data" ] && args+=(-H 'Content-Type: application/json' --data "$data")
  rm -f "$LOGDIR/.h" "$LOGDIR/.b"
  STATUS=$(curl "${args[@]}" "$url" 2>/dev/null) || STATUS=${STATUS:-000}
  BODY=$(cat "$LOGDIR/.b" 2>/dev/null || true)
  HEADERS=$(tr '[:upper:]' '[:lower:]' <"$LOGDIR/.h" 2>/dev/null || true)
}

# json_field KEY: the value of KEY in BODY, at its first occurrence ('' when absent). Read with a
# pattern, not a JSON parser: enough for the flat answers of the sample service, the gateway and the
# control plane (strings without escapes), and it starts no process, which counts in the polling
# loops below on a loaded machine.
json_field() {
  local re="\"$1\"[[:space:]]*:[[:space:]]*(\"([^\"\\]*)\"|(-?[0-9][0-9.eE+-]*|true|false))"
  [[ $BODY =~ $re ]] || return 0
  if [[ ${BASH_REMATCH[1]} == \"* ]]; then echo "${BASH_REMATCH[2]}"; else echo "${BASH_REMATCH[3]}"; fi
}

is_json() { python3 -c 'import json,sys; json.loads(sys.argv[1])' "$BODY" 2>/dev/null; }

# ctl ARGS...: runs sluice ctl (server and token from SLUICE_SERVER, SLUICE_TOKEN, as printed);
# sets CTL_OUT (stdout and stderr) and CTL_RC.
ctl() {
  CTL_OUT=$("$SLUICE_BIN" ctl "$@" 2>&1)
  CTL_RC=$?
}
# ctl_column COLUMNS...: the given columns (1-based) of the rows of the table in CTL_OUT, each row
# on one line, words joined by '=', sorted.
ctl_column() {
  local cols="\$$1" c
  shift
  for c in "$@"; do cols+=" \"=\" \$$c"; done
  awk "NR > 1 && NF > 1 {print $cols}" <<<"$CTL_OUT" | sort
}
one_line() { tr '\n' ' ' <<<"$1" | sed 's/ *$//'; }
first_line() { head -n 1 <<<"$1"; }
now_us() { echo "${EPOCHREALTIME//[!0-9]/}"; }
since() { # T0 (now_us): seconds since then, 0.00
  local d=$(($(now_us) - $1))
  printf '%d.%02d' $((d / 1000000)) $((d % 1000000 / 10000))
}

# check_gateways WHEN: both gateways report (sluice ctl gateways) that they applied the control
# plane's current version, health ok; they report every second, so this waits up to 5 s.
check_gateways() {
  local t0 cur got want
  t0=$(now_us)
  while :; do
    http GET "$CP_URL/ready"
    cur=$(json_field version)
    ctl gateways # GATEWAY CITY ZONE APPLIED STATUS HEALTH SEEN ERROR
    got=$(one_line "$(ctl_column 1 6 4)")
    want="gw-a1=ok=$cur gw-b1=ok=$cur"
    [ -n "$cur" ] && [ "$got" = "$want" ] && break
    [ "$(now_us)" -lt $((t0 + 5000000)) ] || break
    sleep 0.1
  done
  if [ -n "$cur" ] && [ "$got" = "$want" ]; then
    ok "$1: sluice ctl gateways -> gw-a1 and gw-b1 applied version $cur, health ok"
  else
    fail "$1: sluice ctl gateways -> '$got' (rc $CTL_RC), expected '$want' $(first_line "$CTL_OUT")"
  fi
}

# latest_version: the control plane's latest config version (the first row of ctl versions).
latest_version() {
  "$SLUICE_BIN" ctl versions 2>/dev/null | awk 'NR == 2 {print $1}'
}

# payments_service_everywhere WANT WHEN: polls both gateways (up to 2 s) until 10 calls of
# GET /api/payments/7 in a row through each are all answered 200 by service WANT.
payments_service_everywhere() {
  local want=$1 t0 gw i done_a='' done_b='' good
  t0=$(now_us)
  while [ "$(now_us)" -lt $((t0 + 2000000)) ]; do
    for gw in "$GW_A" "$GW_B"; do
      good=1
      for ((i = 0; i < 10; i++)); do
        http GET "http://$gw/api/payments/7"
        if [ "$STATUS" != 200 ] || [ "$(json_field service)" != "$want" ]; then good=''; break; fi
      done
      if [ -n "$good" ]; then
        if [ "$gw" = "$GW_A" ]; then done_a=1; else done_b=1; fi
      fi
    done
    [ -n "$done_a" ] && [ -n "$done_b" ] && break
    sleep 0.05
  done
  if [ -n "$done_a" ] && [ -n "$done_b" ]; then
    ok "$2: 10 calls of /api/payments/7 through each gateway -> 200 from $want"
  else
    fail "$2: after 2 s, 10 calls in a row answered by $want through${done_a:+ gateway-a}${done_b:+ gateway-b} only; last: $STATUS $BODY"
  fi
}

# payments_path_everywhere WANT WHEN: polls both gateways (up to 2 s) until GET /api/payments/7 is
# served upstream as WANT by both.
payments_path_everywhere() {
  local want=$1 t0 gw done_a='' done_b=''
  t0=$(now_us)
  while [ "$(now_us)" -lt $((t0 + 2000000)) ]; do
    for gw in "$GW_A" "$GW_B"; do
      http GET "http://$gw/api/payments/7"
      if [ "$STATUS" = 200 ] && [ "$(json_field path)" = "$want" ]; then
        if [ "$gw" = "$GW_A" ]; then done_a=1; else done_b=1; fi
      fi
    done
    [ -n "$done_a" ] && [ -n "$done_b" ] && break
    sleep 0.05
  done
  if [ -n "$done_a" ] && [ -n "$done_b" ]; then
    ok "$2: both gateways send /api/payments/7 upstream as $want (within $(since "$t0") s)"
  else
    fail "$2: after 2 s, /api/payments/7 sent upstream as $want by${done_a:+ gateway-a}${done_b:+ gateway-b} only; last: $STATUS $BODY"
  fi
}

# app_codes GATEWAY: the status codes of 4 calls to /api/payments/7 with x-app-id: demo-check.
app_codes() {
  local i out=()
  for i in 1 2 3 4; do
    out+=("$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' -H 'x-app-id: demo-check' "http://$1/api/payments/7")")
  done
  echo "${out[*]}"
}

check_app_codes() { # EXPECTED WHEN WHY: 4 calls of one app through each gateway
  local gw codes
  for gw in "$GW_A" "$GW_B"; do
    codes=$(app_codes "$gw")
    if [ "$codes" = "$1" ]; then
      ok "$2: 4 calls of one app through $gw -> $codes ($3)"
    else
      fail "$2: 4 calls of one app through $gw -> $codes, expected $1"
    fi
  done
}

echo
echo "Checking:"

if [ "$CP" = 1 ]; then
  # the control plane as the script left it: version 1, seven instances, both gateways on it
  ctl get all
  got=$(awk 'NR > 1 {print $1 "/" $2}' <<<"$CTL_OUT" | sort | tr '\n' ' ')
  want="route/accounts-api route/payments-api service/accounts service/payments units/units "
  if [ "$CTL_RC" = 0 ] && [ "$got" = "$want" ] &&
    [ "$(grep -c '^service .*endpoints from the registry' <<<"$CTL_OUT")" = 2 ]; then
    ok "sluice ctl get all -> ${got% } (services' endpoints from the registry)"
  else
    fail "sluice ctl get all -> rc $CTL_RC: $CTL_OUT"
  fi
  ctl instances # SERVICE ID ADDRESS CITY ZONE WEIGHT HEARTBEAT
  got=$(one_line "$(ctl_column 2 1 4 5 3)")
  want=$(one_line "$(for s in "${SERVICES[@]}"; do
    read -r id name city zone port <<<"$s"
    echo "$id=$name=$city=$zone=127.0.0.1:$((port + OFFSET))"
  done | sort)")
  if [ "$CTL_RC" = 0 ] && [ "$got" = "$want" ]; then
    ok "sluice ctl instances -> all ${#SERVICES[@]} sample services, with their city, zone and address"
  else
    fail "sluice ctl instances -> rc $CTL_RC '$got', expected '$want' $(first_line "$CTL_OUT")"
  fi
  check_gateways "at start"
  ctl versions # VERSION CREATED AUTHOR CHANGES REASON
  got=$(one_line "$(ctl_column 1)")
  if [ "$CTL_RC" = 0 ] && [ "$got" = 1 ] && grep -qF "$APPLY_REASON" <<<"$CTL_OUT"; then
    ok "sluice ctl versions -> version 1 ($APPLY_REASON)"
  else
    fail "sluice ctl versions -> rc $CTL_RC '$got' $(first_line "$CTL_OUT")"
  fi
fi

# routing, city a
http GET "http://$GW_A/api/accounts/42"
if [ "$STATUS" = 200 ] && [ "$(json_field service)" = accounts ] && [ "$(json_field city)" = a ]; then
  ok "GET http://$GW_A/api/accounts/42 -> 200 from accounts in city a ($(json_field instance))"
else
  fail "GET http://$GW_A/api/accounts/42 -> $STATUS $BODY"
fi
if [ "$(json_field path)" = /accounts/42 ]; then
  ok "strip_prefix /api: the service saw /accounts/42"
else
  fail "strip_prefix /api: the service saw '$(json_field path)', expected /accounts/42"
fi
if grep -q '^x-request-id: .' <<<"$HEADERS"; then
  ok "the response carries x-request-id"
else
  fail "no x-request-id header in the response"
fi

# round robin over the two accounts instances of city a
declare -A seen=()
for i in 1 2 3 4; do
  http GET "http://$GW_A/api/accounts/$i"
  inst=$(json_field instance)
  if [ "$STATUS" = 200 ] && [ -n "$inst" ]; then seen[$inst]=1; fi
done
if [ ${#seen[@]} -eq 2 ]; then
  ok "4 requests reached both accounts instances of city a (${!seen[*]})"
else
  fail "4 requests reached ${#seen[@]} accounts instance(s) of city a (${!seen[*]}), expected 2"
fi

# routing, city b
http GET "http://$GW_B/api/payments/7"
if [ "$STATUS" = 200 ] && [ "$(json_field service)" = payments ] && [ "$(json_field city)" = b ]; then
  ok "GET http://$GW_B/api/payments/7 -> 200 from payments in city b"
else
  fail "GET http://$GW_B/api/payments/7 -> $STATUS $BODY"
fi
http GET "http://$GW_B/api/accounts/42"
if [ "$STATUS" = 200 ] && [ "$(json_field city)" = b ]; then
  ok "GET http://$GW_B/api/accounts/42 -> 200 from accounts in city b"
else
  fail "GET http://$GW_B/api/accounts/42 -> $STATUS $BODY"
fi

# no route
http GET "http://$GW_A/nope"
if [ "$STATUS" = 404 ] && [ -n "$(json_field error)" ]; then
  ok "GET http://$GW_A/nope -> 404 with a JSON error"
else
  fail "GET http://$GW_A/nope -> $STATUS $BODY (expected 404 with {\"error\": ...})"
fi

# admin API
http GET "http://$ADMIN_A/metrics"
if [ "$STATUS" = 200 ] && grep -q '^sluice_requests_total' <<<"$BODY"; then
  ok "GET http://$ADMIN_A/metrics -> 200 with sluice_requests_total"
else
  fail "GET http://$ADMIN_A/metrics -> $STATUS, sluice_requests_total missing"
fi
http GET "http://$ADMIN_A/stats"
if [ "$STATUS" = 200 ] && is_json; then
  ok "GET http://$ADMIN_A/stats -> 200 JSON"
else
  fail "GET http://$ADMIN_A/stats -> $STATUS $BODY"
fi

# shard routing: customer 42 (shard 42) lives in city a, customer 77 (shard 77) in city b; each
# is served in its home city through either gateway
customer_city() { # GATEWAY CUSTOMER: sets STATUS, BODY; prints the serving city
  local args=(-s --max-time 5 -H "x-customer-id: $2" -o "$LOGDIR/.b" -w '%{http_code}')
  rm -f "$LOGDIR/.b"
  STATUS=$(curl "${args[@]}" "http://$1/api/accounts/$2" 2>/dev/null) || STATUS=${STATUS:-000}
  BODY=$(cat "$LOGDIR/.b" 2>/dev/null || true)
  [ "$STATUS" = 200 ] && json_field city
}
check_homes() { # EXPECTED-CITY-OF-42 EXPECTED-CITY-OF-77 WHEN
  local gw c cust want
  for gw in "$GW_A" "$GW_B"; do
    for cust in 42 77; do
      if [ "$cust" = 42 ]; then want=$1; else want=$2; fi
      c=$(customer_city "$gw" "$cust")
      if [ "$c" = "$want" ]; then
        ok "$3: customer $cust through $gw -> 200 from city $c"
      else
        fail "$3: customer $cust through $gw -> $STATUS, city '$c' (expected $want) $BODY"
      fi
    done
  done
}
# units_owners ADMIN: sets STATUS, BODY; prints the owners as a=..;b=.. (sorted)
units_owners() {
  http GET "http://$1/units"
  python3 -c 'import json,sys
try:
    o = json.loads(sys.argv[1])["owners"]
    print(";".join(f"{k}={o[k]}" for k in sorted(o)))
except Exception:
    print("")' "$BODY"
}
check_owners() { # EXPECTED WHEN
  local admin got
  for admin in "$ADMIN_A" "$ADMIN_B"; do
    got=$(units_owners "$admin")
    if [ "$STATUS" = 200 ] && [ "$(tr -d ' ' <<<"$got")" = "$1" ]; then
      ok "$2: GET http://$admin/units -> owners $got"
    else
      fail "$2: GET http://$admin/units -> $STATUS $BODY (expected owners $1)"
    fi
  done
}
check_homes a b "before the switch"
check_owners "a=0-49;b=50-99" "before the switch"
if switch_out=$("$SLUICE_BIN" gateway switch --admin "$ADMIN_A" --admin "$ADMIN_B" --from a --to b \
  --shards 0-49 "${SWITCH_CP_ARGS[@]}" 2>&1); then ok "sluice gateway switch --from a --to b --shards 0-49 (both gateways)"; else
  fail "sluice gateway switch --from a --to b --shards 0-49: $switch_out"; fi
check_owners "b=0-99" "after the switch"
check_homes b b "after the switch"
if switch_out=$("$SLUICE_BIN" gateway switch --admin "$ADMIN_A" --admin "$ADMIN_B" --from b --to a \
  --shards 0-49 "${SWITCH_CP_ARGS[@]}" 2>&1); then ok "sluice gateway switch --from b --to a --shards 0-49 (back)"; else
  fail "sluice gateway switch --from b --to a --shards 0-49: $switch_out"; fi
check_homes a b "after switching back"

# reload: SIGHUP, then POST /reload; the config version goes up and traffic keeps flowing
http GET "http://$ADMIN_A/ready"
v0=$(json_field version)
kill -HUP "$PID_A" 2>/dev/null || fail "kill -HUP $PID_A: gateway-a is not running"
v1=$v0
is_int() { [[ $1 =~ ^[0-9]+$ ]]; }
for ((i = 0; i < 50; i++)); do
  http GET "http://$ADMIN_A/ready"
  v1=$(json_field version)
  [ "$STATUS" = 200 ] && is_int "$v0" && is_int "$v1" && [ "$v1" -gt "$v0" ] && break
  sleep 0.1
done
# /ready reports the config version; without it, being ready and alive is all that can be seen.
if [ "$STATUS" = 200 ] && kill -0 "$PID_A" 2>/dev/null &&
  { ! is_int "$v0" || { is_int "$v1" && [ "$v1" -gt "$v0" ]; }; }; then
  ok "kill -HUP $PID_A: gateway-a reloaded (config version $v0 -> $v1) and is ready"
else
  fail "kill -HUP $PID_A: /ready -> $STATUS $BODY (version before: $v0)"
fi
http POST "http://$ADMIN_A/reload"
if [ "$STATUS" = 200 ]; then
  ok "POST http://$ADMIN_A/reload -> 200 ($(tr -d "\n " <<<"$BODY"))"
else
  fail "POST http://$ADMIN_A/reload -> $STATUS $BODY"
fi
http GET "http://$GW_A/api/accounts/42"
if [ "$STATUS" = 200 ]; then ok "traffic flows after the reloads"; else fail "after the reloads: $STATUS $BODY"; fi

if [ "$CP" = 1 ]; then
  # a change through the control plane (examples/control/change.yaml), then its rollback
  ctl diff -f "$CHANGE"
  if [ "$CTL_RC" = 0 ] && grep -q 'route/payments-api (change)' <<<"$CTL_OUT" &&
    grep -q 'rate_limit/payments-per-app (add)' <<<"$CTL_OUT"; then
    ok "sluice ctl diff -f $(show "$CHANGE") -> route/payments-api (change), rate_limit/payments-per-app (add)"
  else
    fail "sluice ctl diff -f $CHANGE -> rc $CTL_RC: $CTL_OUT"
  fi
  # The switchover above recorded its ownership as versions of its own: count from the latest.
  ctl versions
  base=$(awk 'NR == 2 {print $1}' <<<"$CTL_OUT")
  [[ $base =~ ^[0-9]+$ ]] || base=1
  ctl apply -f "$CHANGE" --reason "payments: /v2 paths, 3 a minute per app"
  if [ "$CTL_RC" = 0 ] && grep -qx "version $((base + 1))" <<<"$CTL_OUT"; then
    ok "sluice ctl apply -f $(show "$CHANGE") -> version $((base + 1))"
  else
    fail "sluice ctl apply -f $CHANGE -> rc $CTL_RC: $CTL_OUT"
  fi
  payments_path_everywhere /v2/payments/7 "version $((base + 1))"
  check_app_codes "200 200 200 429" "version $((base + 1))" "rate limit payments-per-app"
  check_gateways "version $((base + 1))"
  ctl rollback 1 --reason "back to version 1"
  if [ "$CTL_RC" = 0 ] && grep -q "rolled back to version 1: now version $((base + 2))" <<<"$CTL_OUT"; then
    ok "sluice ctl rollback 1 -> $(grep 'rolled back' <<<"$CTL_OUT")"
  else
    fail "sluice ctl rollback 1 -> rc $CTL_RC: $CTL_OUT"
  fi
  payments_path_everywhere /payments/7 "after the rollback"
  check_app_codes "200 200 200 200" "after the rollback" "no rate limit"
  check_gateways "after the rollback"
  ctl versions
  got=$(awk 'NR > 1 {print $1}' <<<"$CTL_OUT" | tr '\n' ' ')
  want="$(seq "$((base + 2))" -1 1 | tr '\n' ' ')"
  if [ "$CTL_RC" = 0 ] && [ "$got" = "$want" ]; then
    ok "sluice ctl versions -> $want"
  else
    fail "sluice ctl versions -> rc $CTL_RC '$got', expected $want $(first_line "$CTL_OUT")"
  fi

  # a canary release of payments-v2, broken on purpose: the analysis at its first step finds the
  # errors and the route goes back to payments alone (examples/control/release.yaml)
  t_release=$(now_us)
  start_traffic
  http POST "http://$SVC_PAY_V2/_sample/faults" '{"error_rate": 1}'
  if [ "$STATUS" = 200 ]; then ok "POST /_sample/faults {\"error_rate\": 1} on a-payments-v2 -> 200"; else
    fail "POST /_sample/faults on a-payments-v2 -> $STATUS $BODY"; fi
  latest=$(latest_version)
  ctl apply -f "$RELEASE" --reason "payments-v2: canary release"
  if [ "$CTL_RC" = 0 ] && grep -qx "version $((latest + 1))" <<<"$CTL_OUT"; then
    ok "sluice ctl apply -f $(show "$RELEASE") -> version $((latest + 1)) (release payments-v2)"
  else
    fail "sluice ctl apply -f $RELEASE -> rc $CTL_RC: $CTL_OUT"
  fi
  t0=$(now_us)
  while :; do
    ctl release status payments-v2
    grep -q '^release payments-v2: \(rolled_back\|promoted\|aborted\)' <<<"$CTL_OUT" && break
    [ "$(now_us)" -lt $((t0 + 30000000)) ] || break
    sleep 0.2
  done
  if [ "$CTL_RC" = 0 ] && grep -q '^release payments-v2: rolled_back, canary at 0%' <<<"$CTL_OUT" &&
    grep -q 'error_ratio vs stable' <<<"$CTL_OUT"; then
    ok "sluice ctl release status payments-v2 -> rolled_back, canary at 0% within $(since "$t0") s ($(grep -o 'error ratio [^(]*' <<<"$CTL_OUT" | head -n 1 | sed 's/ *$//'))"
  else
    fail "sluice ctl release status payments-v2 after $(since "$t0") s -> rc $CTL_RC: $CTL_OUT"
  fi
  payments_service_everywhere payments "after the canary's rollback"
  # Each gateway's traffic: the canary's 500s, and how many of them, while it had its 20%.
  codes=$(sort "$LOGDIR/traffic.codes" 2>/dev/null | uniq -c | awk '{printf "%s%s x %s", (NR > 1 ? ", " : ""), $1, $2}')
  if grep -qx 500 "$LOGDIR/traffic.codes" 2>/dev/null; then
    ok "the traffic during the release: $codes (the 500s: payments-v2's share before the rollback)"
  else
    fail "the traffic during the release: '$codes', expected some 500s from payments-v2"
  fi
  ctl events # ID AT SOURCE KIND SUBJECT DETAIL
  if [ "$CTL_RC" = 0 ] && awk '$4 == "release_rolled_back" && $5 == "payments-v2"' <<<"$CTL_OUT" | grep -q .; then
    ok "sluice ctl events -> release_rolled_back payments-v2"
  else
    fail "sluice ctl events -> rc $CTL_RC, no release_rolled_back payments-v2: $CTL_OUT"
  fi
  ctl changes # ID STATE OPERATION AUTHOR PROPOSED VERSION FLAGS RESOURCES REASON
  got=$(awk 'NR > 1 && $4 == "release/payments-v2" {print; exit}' <<<"$CTL_OUT")
  if [ "$CTL_RC" = 0 ] && [[ $got =~ ^[0-9]+\ +done\  ]] && [[ $got == *" emergency,review "* ]]; then
    ok "sluice ctl changes -> the rollback: change ${got%% *} by release/payments-v2, done, flagged emergency,review"
  else
    fail "sluice ctl changes -> rc $CTL_RC '$got', expected the newest change by release/payments-v2 done, emergency,review: $CTL_OUT"
  fi
  http POST "http://$SVC_PAY_V2/_sample/faults" '{"error_rate": 0}'

  # change management: a policy holds payments changes for another operator's approval, then
  # rolls them out in stages: city a's gateway first, every gateway after an analysis
  latest=$(latest_version)
  ctl apply -f "$POLICY" --reason "payments changes need a second pair of eyes"
  if [ "$CTL_RC" = 0 ] && grep -qx "version $((latest + 1))" <<<"$CTL_OUT"; then
    ok "sluice ctl apply -f $(show "$POLICY") -> version $((latest + 1))"
  else
    fail "sluice ctl apply -f $POLICY -> rc $CTL_RC: $CTL_OUT"
  fi
  ctl apply -f "$CHANGE" --reason "payments: /v2 paths again"
  held=''
  if [ "$CTL_RC" = 0 ] && [[ $CTL_OUT =~ change\ ([0-9]+)\ proposed ]]; then
    held=${BASH_REMATCH[1]}
    ok "sluice ctl apply -f $(show "$CHANGE") under the policy -> change $held proposed"
  else
    fail "sluice ctl apply -f $CHANGE under the policy -> rc $CTL_RC: $CTL_OUT"
  fi
  payments_path_everywhere /payments/7 "while change ${held:-?} waits for approval"
  ctl --token-file "$TOKEN_FILE" change approve "${held:-0}" --reason "the author may not"
  if [ "$CTL_RC" = 1 ] && grep -q "refused for this token: .* cannot approve it" <<<"$CTL_OUT"; then
    ok "sluice ctl change approve $held by its author -> refused ($(first_line "$CTL_OUT"))"
  else
    fail "sluice ctl change approve $held by its author -> rc $CTL_RC: $CTL_OUT"
  fi
  "$SLUICE_BIN" ctl tokens create reviewer --role operator >"$LOGDIR/reviewer.token" \
    2>"$LOGDIR/reviewer.err" ||
    fail "sluice ctl tokens create reviewer --role operator: $(cat "$LOGDIR/reviewer.err")"
  t_rollout=$(now_us)
  ctl --token-file "$LOGDIR/reviewer.token" change approve "${held:-0}" --reason "reviewed"
  if [ "$CTL_RC" = 0 ]; then
    ok "sluice ctl change approve $held by reviewer -> $(first_line "$CTL_OUT")"
  else
    fail "sluice ctl change approve $held by reviewer -> rc $CTL_RC: $CTL_OUT"
  fi
  # Stage 1: gateway-a (city a) has the change, gateway-b keeps the version before it until the
  # analysis passes (3 s).
  t0=$(now_us)
  while :; do
    http GET "http://$GW_A/api/payments/7"
    path_a=$(json_field path)
    http GET "http://$GW_B/api/payments/7"
    path_b=$(json_field path)
    [ "$path_a" = /v2/payments/7 ] && break
    [ "$(now_us)" -lt $((t0 + 3000000)) ] || break
    sleep 0.05
  done
  if [ "$path_a" = /v2/payments/7 ] && [ "$path_b" = /payments/7 ]; then
    ok "stage 1 of change $held: gateway-a sends /api/payments/7 upstream as $path_a, gateway-b still as $path_b"
  else
    fail "stage 1 of change $held: gateway-a sends it as '$path_a', gateway-b as '$path_b' (expected /v2/payments/7 and /payments/7)"
  fi
  # rollout_gateways: from CTL_OUT (ctl rollout status), the version each gateway is on, as
  # gw-a1=V gw-b1=V (the VERSION GATEWAYS IDS table)
  rollout_gateways() {
    awk 'NF == 3 && $1 ~ /^[0-9]+$/ {n = split($3, ids, ","); for (i = 1; i <= n; i++) print ids[i] "=" $1}' <<<"$CTL_OUT" | sort | tr '\n' ' ' | sed 's/ $//'
  }
  from='' to=''
  t0=$(now_us)
  while :; do
    ctl rollout status "${held:-0}"
    if [[ $CTL_OUT =~ version\ ([0-9]+)\ -\>\ ([0-9]+) ]]; then from=${BASH_REMATCH[1]} to=${BASH_REMATCH[2]}; fi
    grep -q 'stage 1 of 2' <<<"$CTL_OUT" && [ "$(rollout_gateways)" = "gw-a1=$to gw-b1=$from" ] && break
    [ "$(now_us)" -lt $((t0 + 4000000)) ] || break
    sleep 0.2
  done
  if [ "$CTL_RC" = 0 ] && grep -q "^change $held: rolling_out .*stage 1 of 2" <<<"$CTL_OUT" &&
    [ "$(rollout_gateways)" = "gw-a1=$to gw-b1=$from" ]; then
    ok "sluice ctl rollout status $held -> rolling_out, stage 1 of 2: gw-a1 on version $to, gw-b1 on $from"
  else
    fail "sluice ctl rollout status $held -> rc $CTL_RC '$(rollout_gateways)', expected stage 1 of 2, gw-a1 on $to, gw-b1 on $from: $CTL_OUT"
  fi
  t0=$(now_us)
  while :; do
    ctl rollout status "${held:-0}"
    grep -q "^change $held: \(done\|rolled_back\)" <<<"$CTL_OUT" && [ "$(rollout_gateways)" = "gw-a1=$to gw-b1=$to" ] && break
    [ "$(now_us)" -lt $((t0 + 30000000)) ] || break
    sleep 0.2
  done
  # The analysis of stage 1 (gw-a1 against gw-b1) passed, and the last stage ended the rollout.
  stage1=$(awk '$2 == 1 && $3 == "pass" && $4 == "proceed"' <<<"$CTL_OUT")
  if [ "$CTL_RC" = 0 ] && grep -q "^change $held: done .*stage 2 of 2" <<<"$CTL_OUT" && [ -n "$stage1" ] &&
    [ "$(rollout_gateways)" = "gw-a1=$to gw-b1=$to" ]; then
    ok "sluice ctl rollout status $held -> done within $(since "$t_rollout") s of the approval: stage 1's analysis passed, gw-a1 and gw-b1 on version $to"
  else
    fail "sluice ctl rollout status $held after $(since "$t0") s -> rc $CTL_RC '$(rollout_gateways)': $CTL_OUT"
  fi
  stop_traffic
  payments_path_everywhere /v2/payments/7 "change ${held:-?} rolled out"
  ctl change show "${held:-0}"
  if [ "$CTL_RC" = 0 ] && grep -q "reviewer" <<<"$CTL_OUT" && grep -q "done" <<<"$CTL_OUT"; then
    ok "sluice ctl change show $held -> done, approved by reviewer"
  else
    fail "sluice ctl change show $held -> rc $CTL_RC: $CTL_OUT"
  fi
  ok "change management (release, approval, staged rollout) took $(since "$t_release") s"
fi

# fault injection on a-accounts-1
http POST "http://$SVC_A1/_sample/faults" '{"error_rate": 1}'
if [ "$STATUS" = 200 ]; then ok "POST /_sample/faults {\"error_rate\": 1} on a-accounts-1 -> 200"; else
  fail "POST /_sample/faults on a-accounts-1 -> $STATUS $BODY"; fi
http GET "http://$SVC_A1/accounts/1"
if [ "${STATUS:0:1}" = 5 ]; then ok "a-accounts-1 now fails directly ($STATUS)"; else
  fail "a-accounts-1 answered $STATUS with error_rate 1"; fi
# With the control plane, accounts has outlier detection (3 errors in a row): gateway-a leaves
# a-accounts-1 out after its third 500, and reports it as an event.
if [ "$CP" = 1 ]; then n=8; else n=6; fi
codes=()
for ((i = 0; i < n; i++)); do
  http GET "http://$GW_A/api/accounts/42"
  codes+=("$STATUS")
done
if [ "$CP" = 1 ] && [ "${codes[*]: -2}" = "200 200" ] && [ "$(tr ' ' '\n' <<<"${codes[*]}" | grep -c 500)" = 3 ]; then
  ok "through gateway-a with one instance failing: ${codes[*]} (three 500s, then it is left out)"
elif [ "$CP" = 0 ] && [[ " ${codes[*]} " == *" 200 "* ]]; then
  ok "through gateway-a with one instance failing: ${codes[*]} (the other instance still serves)"
else
  fail "through gateway-a with one instance failing: ${codes[*]} (expected some 200$([ "$CP" = 0 ] || echo ", three 500s, the last ones 200"))"
fi
http POST "http://$SVC_A1/_sample/faults" '{"error_rate": 0}'
http GET "http://$SVC_A1/accounts/1"
if [ "$STATUS" = 200 ]; then ok "a-accounts-1 recovered (error_rate 0)"; else fail "a-accounts-1 after reset: $STATUS"; fi
if [ "$CP" = 1 ]; then
  want="gw-a1 endpoint_ejected accounts/$SVC_A1"
  t0=$(now_us)
  while :; do
    ctl events # ID AT SOURCE KIND SUBJECT DETAIL
    got=$(awk 'NR > 1 {print $3, $4, $5}' <<<"$CTL_OUT")
    grep -qxF "$want" <<<"$got" && break
    [ "$(now_us)" -lt $((t0 + 5000000)) ] || break
    sleep 0.1
  done
  if grep -qxF "$want" <<<"$got"; then
    ok "sluice ctl events -> $want"
  else
    fail "sluice ctl events -> rc $CTL_RC '$(tr '\n' ';' <<<"$got")', expected '$want' $(first_line "$CTL_OUT")"
  fi
fi

declare -A GONE=() # processes the checks stopped
if [ "$CP" = 1 ]; then
  # b-payments-1 stops: it deregisters, and gateway-b sends payments to city a
  pid=${PID_OF[b-payments-1]}
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  GONE[b-payments-1]=1
  rc=0
  wait "$pid" 2>/dev/null || rc=$?
  for ((i = 0; i < 20; i++)); do
    got=$(registered)
    [[ " $got " != *" b-payments-1 "* ]] && break
    sleep 0.1
  done
  if [ "$rc" = 0 ] && [ -n "$got" ] && [[ " $got " != *" b-payments-1 "* ]]; then
    ok "kill $pid: b-payments-1 exited (status 0) and left the registry (sluice ctl instances)"
  else
    fail "kill $pid: b-payments-1 exit status $rc, registered: '$got'"
  fi
  t0=$(now_us)
  while [ "$(now_us)" -lt $((t0 + 2000000)) ]; do
    http GET "http://$GW_B/api/payments/7"
    [ "$STATUS" = 200 ] && [ "$(json_field city)" = a ] && break
    sleep 0.05
  done
  if [ "$STATUS" = 200 ] && [ "$(json_field city)" = a ]; then
    ok "without b-payments-1, gateway-b sends payments to city a (within $(since "$t0") s)"
  else
    fail "without b-payments-1: GET http://$GW_B/api/payments/7 -> $STATUS $BODY (expected city a within 2 s)"
  fi
fi

# drain gateway-b: answered at once, then it exits when no connection is left
PID_B=${PID_OF[gateway-b]}
http POST "http://$ADMIN_B/drain"
if [ "${STATUS:0:1}" = 2 ]; then ok "POST http://$ADMIN_B/drain -> $STATUS"; else
  fail "POST http://$ADMIN_B/drain -> $STATUS $BODY"; fi
for ((i = 0; i < 100; i++)); do
  kill -0 "$PID_B" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$PID_B" 2>/dev/null; then
  fail "gateway-b still running 10 s after POST /drain"
else
  rc=0
  wait "$PID_B" 2>/dev/null || rc=$?
  if [ "$rc" = 0 ]; then ok "gateway-b drained and exited (status 0)"; else fail "gateway-b exited with status $rc after drain"; fi
fi
http GET "http://$GW_B/api/accounts/42"
if [ "$STATUS" = 000 ]; then ok "gateway-b no longer accepts connections"; else fail "gateway-b still answers: $STATUS"; fi

# every other process is still up
for id in "${ORDER[@]}"; do
  [ "$id" = gateway-b ] || [ -n "${GONE[$id]:-}" ] && continue
  kill -0 "${PID_OF[$id]}" 2>/dev/null || fail "$id (pid ${PID_OF[$id]}) died during the check"
done

echo
if [ "$FAILS" = 0 ]; then
  echo "demo --check: all checks passed"
  RESULT=0
  exit 0
fi
echo "demo --check: $FAILS check(s) failed; logs in $LOGDIR"
exit 1
