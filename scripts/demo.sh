#!/usr/bin/env bash
# The Sluice demo on one machine: two cities, each with sample services (accounts x2, payments x1)
# behind its own gateway (examples/gateway-a.yaml, examples/gateway-b.yaml). accounts is a unit
# service: customers are split into 100 shards by x-customer-id, city a owns 0-49 and city b 50-99,
# and each gateway forwards the other city's customers to the other gateway. Prints what runs where
# and commands to try (routing, shard routing, a city switchover), then waits for Ctrl-C and stops
# everything it started.
#   scripts/demo.sh           interactive (make demo)
#   scripts/demo.sh --check   start everything, run the printed commands with assertions, exit 0/1
# shellcheck disable=SC2317  # stop_all and on_exit are reached through traps
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
CHECK=0
OFFSET=0

usage() {
  cat <<EOF
usage: scripts/demo.sh [--check] [--port-offset N] [--sluice PATH]

  --check           start everything, run the commands the demo prints and check their results;
                    exit 0 when all pass, 1 otherwise
  --port-offset N   add N to every port (the configs are copied to the log directory with the
                    ports moved), for when the usual 18080.. ports are taken
  --sluice PATH     sluice binary (default: \$SLUICE_BIN or build/sluice)
EOF
}

while [ $# -gt 0 ]; do
  case $1 in
    --check) CHECK=1; shift ;;
    --port-offset) [[ ${2:-} =~ ^[0-9]+$ ]] || { usage >&2; exit 2; }; OFFSET=$2; shift 2 ;;
    --sluice) [ $# -ge 2 ] || { usage >&2; exit 2; }; SLUICE_BIN=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; echo "demo: unknown option: $1" >&2; exit 2 ;;
  esac
done

die() { echo "demo: $*" >&2; exit 1; }

[ -x "$SLUICE_BIN" ] || die "$SLUICE_BIN not found: run 'make build' first ('make demo' builds and runs this)"
for tool in curl python3 setsid; do
  command -v "$tool" >/dev/null 2>&1 || die "missing tool: $tool. Install it with 'make deps' (scripts/install-deps.sh)"
done

# What runs where. Sample services: id service city zone port.
SERVICES=(
  "a-accounts-1 accounts a a1 18101"
  "a-accounts-2 accounts a a2 18102"
  "a-payments-1 payments a a1 18103"
  "b-accounts-1 accounts b b1 18111"
  "b-accounts-2 accounts b b2 18112"
  "b-payments-1 payments b b1 18113"
)
# Gateways: id city config listen-port admin-port.
GATEWAYS=(
  "gateway-a a examples/gateway-a.yaml 18080 18901"
  "gateway-b b examples/gateway-b.yaml 18180 18902"
)
GW_A=127.0.0.1:$((18080 + OFFSET))
GW_B=127.0.0.1:$((18180 + OFFSET))
ADMIN_A=127.0.0.1:$((18901 + OFFSET))
ADMIN_B=127.0.0.1:$((18902 + OFFSET))
SVC_A1=127.0.0.1:$((18101 + OFFSET)) # a-accounts-1, the target of the fault injection

# Every port must be free before anything starts: a leftover demo would answer in our place.
ports=()
for s in "${SERVICES[@]}"; do read -r _ _ _ _ port <<<"$s"; ports+=("$((port + OFFSET))"); done
for g in "${GATEWAYS[@]}"; do read -r _ _ _ port admin <<<"$g"; ports+=("$((port + OFFSET))" "$((admin + OFFSET))"); done
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
[ -z "$busy" ] || die "port(s) $busy already in use (another demo still running? see 'ss -ltnp'; or use --port-offset)"

LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/sluice-demo.XXXXXX")

# With an offset the gateways run from copies of their configs with every demo port moved.
config_path() { # EXAMPLE -> the file to run
  if [ "$OFFSET" = 0 ]; then
    echo "$1"
    return
  fi
  local out args=() p
  out=$LOGDIR/$(basename "$1")
  for p in "${DEMO_PORTS[@]}"; do args+=(-e "s/127\.0\.0\.1:$p\b/127.0.0.1:$((p + OFFSET))/g"); done
  sed "${args[@]}" "$ROOT/$1" >"$out"
  echo "$out"
}
DEMO_PORTS=()
for s in "${SERVICES[@]}"; do read -r _ _ _ _ port <<<"$s"; DEMO_PORTS+=("$port"); done
for g in "${GATEWAYS[@]}"; do read -r _ _ _ port admin <<<"$g"; DEMO_PORTS+=("$port" "$admin"); done

# ---------------------------------------------------------------------------------------------
# children: each in its own process group (setsid), stopped as a group on the way out.

declare -A PID_OF=() CONF_OF=()
ORDER=()
RESULT=1

stop_all() {
  local id pid i
  for id in "${ORDER[@]}"; do
    pid=${PID_OF[$id]}
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for id in "${ORDER[@]}"; do
    pid=${PID_OF[$id]}
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

on_exit() {
  trap - EXIT INT TERM
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

for s in "${SERVICES[@]}"; do
  read -r id name city zone port <<<"$s"
  start "$id" "$SLUICE_BIN" sample-service --listen "127.0.0.1:$((port + OFFSET))" --name "$name" --city "$city" \
    --zone "$zone" --instance "$id" --workers 1
done
for s in "${SERVICES[@]}"; do
  read -r id _ _ _ port <<<"$s"
  wait_ready "$id" "http://127.0.0.1:$((port + OFFSET))/healthz"
done
for g in "${GATEWAYS[@]}"; do
  read -r id city config port admin <<<"$g"
  CONF_OF[$id]=$(config_path "$config")
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
  for s in "${SERVICES[@]}"; do
    read -r id name city zone port <<<"$s"
    printf '%-14s %-5s %-40s %s\n' "$id" "$city" "127.0.0.1:$((port + OFFSET)) ($name, zone $zone)" "${PID_OF[$id]}"
  done
  for g in "${GATEWAYS[@]}"; do
    read -r id city config port admin <<<"$g"
    printf '%-14s %-5s %-40s %s\n' "$id" "$city" "127.0.0.1:$((port + OFFSET)) (admin 127.0.0.1:$((admin + OFFSET)))" "${PID_OF[$id]}"
  done
  echo
  echo "Logs (one file per process; gateways write their JSON access log there): $LOGDIR"
}

if [ "$CHECK" = 0 ]; then
  cat <<EOF

Try:
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
  $SLUICE_BIN gateway switch --admin $ADMIN_A --admin $ADMIN_B --from a --to b --shards 0-49
  curl -s -H 'x-customer-id: 42' http://$GW_A/api/accounts/42; echo
  curl -s http://$ADMIN_A/units; echo
  # and back
  $SLUICE_BIN gateway switch --admin $ADMIN_A --admin $ADMIN_B --from b --to a --shards 0-49
  # reload the config (edit ${CONF_OF[gateway-a]} first to see a change); both ways work
  kill -HUP $PID_A && curl -s http://$ADMIN_A/ready
  curl -s -X POST http://$ADMIN_A/reload
  # fault injection: one accounts instance of city a answers 500 to everything, then recovers
  curl -s -X POST -d '{"error_rate": 1}' http://$SVC_A1/_sample/faults
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code} ' http://$GW_A/api/accounts/42; done; echo
  curl -s -X POST -d '{"error_rate": 0}' http://$SVC_A1/_sample/faults
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

# json_field KEY: the value of a top-level key of BODY ('' when absent or not JSON).
json_field() {
  python3 -c 'import json,sys
try:
    v = json.loads(sys.argv[1]).get(sys.argv[2], "")
except Exception:
    v = ""
print(v if not isinstance(v, bool) else str(v).lower())' "$BODY" "$1"
}

is_json() { python3 -c 'import json,sys; json.loads(sys.argv[1])' "$BODY" 2>/dev/null; }

echo
echo "Checking:"

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
  --shards 0-49 2>&1); then ok "sluice gateway switch --from a --to b --shards 0-49 (both gateways)"; else
  fail "sluice gateway switch --from a --to b --shards 0-49: $switch_out"; fi
check_owners "b=0-99" "after the switch"
check_homes b b "after the switch"
if switch_out=$("$SLUICE_BIN" gateway switch --admin "$ADMIN_A" --admin "$ADMIN_B" --from b --to a \
  --shards 0-49 2>&1); then ok "sluice gateway switch --from b --to a --shards 0-49 (back)"; else
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

# fault injection on a-accounts-1
http POST "http://$SVC_A1/_sample/faults" '{"error_rate": 1}'
if [ "$STATUS" = 200 ]; then ok "POST /_sample/faults {\"error_rate\": 1} on a-accounts-1 -> 200"; else
  fail "POST /_sample/faults on a-accounts-1 -> $STATUS $BODY"; fi
http GET "http://$SVC_A1/accounts/1"
if [ "${STATUS:0:1}" = 5 ]; then ok "a-accounts-1 now fails directly ($STATUS)"; else
  fail "a-accounts-1 answered $STATUS with error_rate 1"; fi
codes=()
for i in 1 2 3 4 5 6; do
  http GET "http://$GW_A/api/accounts/42"
  codes+=("$STATUS")
done
if [[ " ${codes[*]} " == *" 200 "* ]]; then
  ok "through gateway-a with one instance failing: ${codes[*]} (the other instance still serves)"
else
  fail "through gateway-a with one instance failing: ${codes[*]} (expected some 200)"
fi
http POST "http://$SVC_A1/_sample/faults" '{"error_rate": 0}'
http GET "http://$SVC_A1/accounts/1"
if [ "$STATUS" = 200 ]; then ok "a-accounts-1 recovered (error_rate 0)"; else fail "a-accounts-1 after reset: $STATUS"; fi

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
  [ "$id" = gateway-b ] && continue
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
