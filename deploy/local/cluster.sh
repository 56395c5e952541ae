#!/usr/bin/env bash
# A local three-node Apache Kafka cluster (KRaft; every node broker and
# controller), from the same Maven-resolved jars as the single broker of
# services.sh, for the multi-broker reliability scenarios (`make chaos-cluster`).
#
#   deploy/local/cluster.sh up|down|status|bootstrap
#   deploy/local/cluster.sh start|stop|kill|pid NODE     (NODE: 1, 2 or 3)
#
# Node n listens on 127.0.0.1:<base + 100(n-1)> (broker) and the port after
# it (controller); base is $BULKSTREAM_CLUSTER_PORT (default 19092), so
# 19092/19093, 19192/19193, 19292/19293. State (jars, data, logs, pid files)
# lives in $BULKSTREAM_LOCAL_DIR/cluster (default .local/cluster). Nothing
# here touches the single broker of services.sh or its folder. `down` and
# `kill` act only on the pids this script wrote, never by name.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/deploy/local"
STATE="${BULKSTREAM_LOCAL_DIR:-$ROOT/.local}/cluster"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
HOST=127.0.0.1
BASE_PORT="${BULKSTREAM_CLUSTER_PORT:-19092}"
NODES=(1 2 3)
# Three brokers, two workers and the API share this machine's 2 cores and
# 24 GiB: 768 MB of heap each is ample for a few hundred partitions.
HEAP="${BULKSTREAM_CLUSTER_HEAP:--Xms768m -Xmx768m}"
LIBS="$STATE/libs"

log() { printf '[cluster] %s\n' "$*"; }

port() { echo $((BASE_PORT + 100 * ($1 - 1))); }
controller_port() { echo $(($(port "$1") + 1)); }
node_dir() { echo "$STATE/node$1"; }
pid_file() { echo "$(node_dir "$1")/kafka.pid"; }

bootstrap() {
  local out=() n
  for n in "${NODES[@]}"; do out+=("$HOST:$(port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

voters() {
  local out=() n
  for n in "${NODES[@]}"; do out+=("$n@$HOST:$(controller_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

alive() { # alive NODE -> 0 if its pid file names a live process
  local f; f="$(pid_file "$1")"
  [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

jars() {
  if [[ -f "$LIBS/.resolved" && "$LIBS/.resolved" -nt "$HERE/pom.xml" ]]; then
    return
  fi
  log "resolving Kafka jars with Maven (deploy/local/pom.xml)"
  rm -rf "$LIBS"
  mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIBS"
  touch "$LIBS/.resolved"
}

config() { # config NODE: writes the node's server.properties
  local dir; dir="$(node_dir "$1")"
  mkdir -p "$dir"
  sed -e "s#@NODE@#$1#g" -e "s#@DATA@#$dir/data#g" -e "s#@HOST@#$HOST#g" \
      -e "s#@PORT@#$(port "$1")#g" -e "s#@CONTROLLER_PORT@#$(controller_port "$1")#g" \
      -e "s#@VOTERS@#$(voters)#g" -e "s#@RACK@#rack-$1#g" \
      "$HERE/cluster.properties" > "$dir/server.properties"
}

format() { # format NODE: once, with the cluster's one id
  local dir; dir="$(node_dir "$1")"
  [[ -f "$dir/data/meta.properties" ]] && return
  if [[ ! -f "$STATE/cluster.id" ]]; then
    "$PYTHON" "$HERE/new_cluster_id.py" > "$STATE/cluster.id"
  fi
  log "formatting node $1 (cluster $(cat "$STATE/cluster.id"))"
  if ! java -Xmx256m -Dlog4j2.configurationFile="$HERE/log4j2.properties" -cp "$LIBS/*" \
    kafka.tools.StorageTool format -t "$(cat "$STATE/cluster.id")" \
    -c "$dir/server.properties" > "$dir/format.log" 2>&1; then
    tail -n 40 "$dir/format.log" >&2
    exit 1
  fi
}

start_node() { # start_node NODE (background; does not wait)
  local n="$1" dir; dir="$(node_dir "$1")"
  if alive "$n"; then
    log "node $n already running (pid $(cat "$(pid_file "$n")"))"
    return
  fi
  for p in "$(port "$n")" "$(controller_port "$n")"; do
    if port_open "$p"; then log "port $p is taken by a process this script did not start"; exit 1; fi
  done
  config "$n"
  format "$n"
  log "starting node $n on $HOST:$(port "$n") (log: $dir/kafka.log)"
  # shellcheck disable=SC2086  # HEAP is a list of JVM options
  nohup java $HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
    -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
    >> "$dir/kafka.log" 2>&1 < /dev/null &
  echo $! > "$(pid_file "$n")"
}

wait_brokers() { # wait_brokers N...: until these nodes are registered brokers
  "$PYTHON" - "$(bootstrap)" "$@" <<'PY'
import sys, time
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0})
want = {int(n) for n in sys.argv[2:]}
deadline = time.monotonic() + 180
while True:
    try:
        md = admin.list_topics(timeout=2)
        if want <= set(md.brokers):
            print(f"[cluster] brokers {sorted(md.brokers)} answer metadata")
            break
    except Exception as exc:  # still starting
        if time.monotonic() > deadline:
            sys.exit(f"[cluster] brokers {sorted(want)} not registered within 180 s: {exc}")
    if time.monotonic() > deadline:
        sys.exit(f"[cluster] brokers {sorted(want)} not registered within 180 s")
    time.sleep(0.5)
PY
}

stop_node() { # stop_node NODE SIGNAL
  local n="$1" sig="$2" f; f="$(pid_file "$1")"
  if ! alive "$n"; then log "node $n not running (no live pid file)"; rm -f "$f"; return; fi
  local pid; pid="$(cat "$f")"
  log "node $n (pid $pid): SIG$sig"
  kill "-$sig" "$pid"
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then log "node $n did not stop in 60 s; SIGKILL"; kill -9 "$pid"; fi
  rm -f "$f"
}

stop_all() { # SIGTERM every node at once: stopped one by one, the last node
  # waits for good on a controlled shutdown its lost quorum cannot grant.
  local n pids=()
  for n in "${NODES[@]}"; do
    if alive "$n"; then
      pids+=("$n:$(cat "$(pid_file "$n")")")
      log "node $n (pid $(cat "$(pid_file "$n")")): SIGTERM"
      kill -TERM "$(cat "$(pid_file "$n")")"
    else
      log "node $n not running (no live pid file)"
    fi
  done
  local entry pid
  for entry in "${pids[@]}"; do
    n="${entry%%:*}"; pid="${entry#*:}"
    for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "node $n did not stop in 60 s; SIGKILL"; kill -9 "$pid"; fi
    rm -f "$(pid_file "$n")"
  done
}

node_arg() {
  [[ "${1:-}" =~ ^[123]$ ]] || { echo "NODE must be 1, 2 or 3" >&2; exit 2; }
}

status() {
  local rc=0 n
  for n in "${NODES[@]}"; do
    if alive "$n"; then log "node $n: running (pid $(cat "$(pid_file "$n")")) on $HOST:$(port "$n")"
    else log "node $n: stopped"; rc=1; fi
  done
  return $rc
}

case "${1:-}" in
  up)
    mkdir -p "$STATE"; jars
    for n in "${NODES[@]}"; do start_node "$n"; done
    if ! wait_brokers "${NODES[@]}"; then
      for n in "${NODES[@]}"; do tail -n 20 "$(node_dir "$n")/kafka.log" >&2 || true; done
      exit 1
    fi
    log "bootstrap servers: $(bootstrap)" ;;
  down) stop_all ;;
  status) status ;;
  bootstrap) bootstrap ;;
  start) node_arg "${2:-}"; jars; start_node "$2"; wait_brokers "$2" ;;
  stop) node_arg "${2:-}"; stop_node "$2" TERM ;;
  kill) node_arg "${2:-}"; stop_node "$2" KILL ;;
  pid) node_arg "${2:-}"; alive "$2" && cat "$(pid_file "$2")" ;;
  *) echo "usage: $0 up|down|status|bootstrap|start N|stop N|kill N|pid N" >&2; exit 2 ;;
esac
