# Process and file helpers shared by the bench/*.sh scripts (sourced, not run). The sourcing
# script defines NAME (its name, for messages), LIB, the PIDS array of its children (each started
# with setsid, so that its whole process group can be stopped) and die(). start_proxy also needs
# TMP, CONF, SLUICE_BIN, BACKEND_PORT, PROXY_CPU, NOFILE and HAPROXY_MAXCONN.
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

# spawn CPU LOG CMD... -> SPAWNED_PID; CPU "all" = not pinned.
spawn() {
  local cpu=$1 log=$2 pin=()
  shift 2
  [ "$cpu" = all ] || pin=(taskset -c "$cpu")
  setsid "${pin[@]}" "$@" >"$log" 2>&1 </dev/null &
  SPAWNED_PID=$!
  PIDS+=("$SPAWNED_PID")
}

# check_body URL BYTES: the response body has exactly BYTES bytes.
check_body() {
  local got
  got=$(curl -sf --max-time 5 "$1" | wc -c) || got=error
  [ "$got" = "$2" ] || { echo "$NAME: $1 returned $got bytes, expected $2" >&2; return 1; }
}

# start_proxy NAME KEEPALIVE [POOL]: starts it on the proxy CPU; sets PROXY_PID/PORT/DIR (and
# PROXY_ADMIN_PORT for sluice), or SKIP_REASON. POOL "default": sluice without
# max_idle_connections (its pool follows demand); otherwise sluice's pool is capped at KEEPALIVE.
start_proxy() {
  local name=$1 keepalive=$2 pool=${3:-sized} ready_url log
  RUN_SEQ=$((${RUN_SEQ:-0} + 1))
  PROXY_DIR=$TMP/run-$RUN_SEQ-$name
  mkdir -p "$PROXY_DIR"
  PROXY_PORT=$(free_port)
  log=$PROXY_DIR/stdout.log
  ready_url="http://127.0.0.1:$PROXY_PORT/_sample/bytes?n=128"
  case $name in
    nginx)
      render "$CONF/nginx-proxy.conf.in" "$PROXY_DIR/nginx.conf" TMP="$PROXY_DIR" LISTEN_PORT="$PROXY_PORT" \
        BACKEND_PORT="$BACKEND_PORT" KEEPALIVE="$keepalive" NOFILE="$NOFILE" WORKER_CONNECTIONS=$((NOFILE - 64))
      spawn "$PROXY_CPU" "$log" nginx -p "$PROXY_DIR" -e "$PROXY_DIR/error.log" -c "$PROXY_DIR/nginx.conf"
      ;;
    haproxy)
      render "$CONF/haproxy.cfg.in" "$PROXY_DIR/haproxy.cfg" TMP="$PROXY_DIR" LISTEN_PORT="$PROXY_PORT" \
        BACKEND_PORT="$BACKEND_PORT" MAXCONN="$HAPROXY_MAXCONN"
      spawn "$PROXY_CPU" "$log" haproxy -db -f "$PROXY_DIR/haproxy.cfg"
      ;;
    sluice|sluice-gov|sluice-dc|sluice-epoll)
      local admin_port tmpl=$CONF/sluice-gateway.yaml.in io_backend=auto
      [ "$name" = sluice-gov ] && tmpl=$CONF/sluice-gateway-gov.yaml.in
      [ "$name" = sluice-dc ] && tmpl=$CONF/sluice-gateway-dc.yaml.in
      [ "$name" = sluice-epoll ] && io_backend=epoll
      admin_port=$(free_port)
      render "$tmpl" "$PROXY_DIR/gateway.yaml" LISTEN_PORT="$PROXY_PORT" \
        ADMIN_PORT="$admin_port" BACKEND_PORT="$BACKEND_PORT" KEEPALIVE="$keepalive" IO_BACKEND="$io_backend"
      if [ "$pool" = default ]; then sed -i '/max_idle_connections:/d' "$PROXY_DIR/gateway.yaml"; fi
      PROXY_ADMIN_PORT=$admin_port
      spawn "$PROXY_CPU" "$log" "$SLUICE_BIN" gateway --config "$PROXY_DIR/gateway.yaml"
      if ! wait_http "http://127.0.0.1:$admin_port/ready" "$SPAWNED_PID" "$log"; then
        stop_pid "$SPAWNED_PID"
        SKIP_REASON="failed to start (see $log)"
        return 1
      fi
      ;;
  esac
  PROXY_PID=$SPAWNED_PID
  if ! wait_http "$ready_url" "$PROXY_PID" "$log" ||
    ! check_body "$ready_url" 128 || ! check_body "http://127.0.0.1:$PROXY_PORT/_sample/bytes?n=4096" 4096; then
    stop_pid "$PROXY_PID"
    SKIP_REASON="failed to start or to proxy correctly (see $PROXY_DIR)"
    return 1
  fi
  return 0
}
