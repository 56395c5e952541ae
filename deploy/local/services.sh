#!/usr/bin/env bash
# Starts, stops and reports the local Kafka broker (KRaft, single node) and
# Redis server that bulkstream's tests and demo run against, without Docker.
#
#   deploy/local/services.sh up|down|status|redis-up
#
# State (jars, Kafka data, logs, pid files) lives in $BULKSTREAM_LOCAL_DIR
# (default: .local/ at the repository root, git-ignored). `down` stops only
# the processes whose pid files this script wrote, never by name.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/deploy/local"
STATE="${BULKSTREAM_LOCAL_DIR:-$ROOT/.local}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
KAFKA_HOST=127.0.0.1
KAFKA_PORT="${BULKSTREAM_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${BULKSTREAM_KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${BULKSTREAM_REDIS_PORT:-6379}"

KAFKA_DIR="$STATE/kafka"
REDIS_DIR="$STATE/redis"
KAFKA_PID="$KAFKA_DIR/kafka.pid"
REDIS_PID="$REDIS_DIR/redis.pid"

log() { printf '[services] %s\n' "$*"; }

alive() { # alive PIDFILE -> 0 if the pid in it is a live process
  [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

port_open() { # port_open PORT
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

kafka_jars() {
  if [[ -f "$KAFKA_DIR/libs/.resolved" && "$KAFKA_DIR/libs/.resolved" -nt "$HERE/pom.xml" ]]; then
    return
  fi
  log "resolving Kafka broker jars with Maven (deploy/local/pom.xml)"
  rm -rf "$KAFKA_DIR/libs"
  mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_DIR/libs"
  touch "$KAFKA_DIR/libs/.resolved"
}

kafka_java() { # kafka_java MAIN_CLASS ARGS... (foreground)
  java -Xms256m -Xmx1g -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
    -cp "$KAFKA_DIR/libs/*" "$@"
}

kafka_config() {
  sed -e "s#@DATA@#$KAFKA_DIR/data#" -e "s#@HOST@#$KAFKA_HOST#g" \
      -e "s#@PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$CONTROLLER_PORT#g" \
      "$HERE/server.properties" > "$KAFKA_DIR/server.properties"
}

kafka_wait() { # waits until the broker answers a metadata request
  "$PYTHON" - "$KAFKA_HOST:$KAFKA_PORT" <<'PY'
import sys, time
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0})
deadline = time.monotonic() + 120
while True:
    try:
        md = admin.list_topics(timeout=2)
        if md.brokers:
            print(f"[services] kafka answers metadata: {len(md.brokers)} broker(s)")
            break
    except Exception as exc:  # broker still starting
        if time.monotonic() > deadline:
            sys.exit(f"[services] kafka did not answer within 120 s: {exc}")
    time.sleep(0.5)
PY
}

kafka_up() {
  mkdir -p "$KAFKA_DIR"
  if alive "$KAFKA_PID"; then
    log "kafka already running (pid $(cat "$KAFKA_PID"))"
    return
  fi
  if port_open "$KAFKA_PORT"; then
    log "port $KAFKA_PORT is taken by a process we did not start; using it as the broker"
    kafka_wait
    return
  fi
  kafka_jars
  kafka_config
  if [[ ! -f "$KAFKA_DIR/data/meta.properties" ]]; then
    local cluster_id
    cluster_id="$("$PYTHON" "$HERE/new_cluster_id.py")"
    log "formatting kafka storage (cluster $cluster_id)"
    if ! kafka_java kafka.tools.StorageTool format --standalone -t "$cluster_id" \
      -c "$KAFKA_DIR/server.properties" > "$KAFKA_DIR/format.log" 2>&1; then
      tail -n 40 "$KAFKA_DIR/format.log" >&2
      exit 1
    fi
  fi
  log "starting kafka on $KAFKA_HOST:$KAFKA_PORT (log: $KAFKA_DIR/kafka.log)"
  nohup java -Xms1g -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
    -cp "$KAFKA_DIR/libs/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
    > "$KAFKA_DIR/kafka.log" 2>&1 < /dev/null &
  echo $! > "$KAFKA_PID"
  if ! kafka_wait; then
    tail -n 40 "$KAFKA_DIR/kafka.log" >&2
    exit 1
  fi
}

redis_up() {
  mkdir -p "$REDIS_DIR"
  if alive "$REDIS_PID"; then
    log "redis already running (pid $(cat "$REDIS_PID"))"
    return
  fi
  if port_open "$REDIS_PORT"; then
    log "port $REDIS_PORT is taken by a process we did not start; using it as redis"
    return
  fi
  if ! command -v redis-server >/dev/null; then
    log "installing redis-server with apt-get"
    if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  fi
  log "starting redis on 127.0.0.1:$REDIS_PORT (log: $REDIS_DIR/redis.log)"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
    --pidfile "$REDIS_PID" --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" \
    --save "" --appendonly no
  for _ in $(seq 1 100); do
    if redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
      log "redis answers PING"
      return
    fi
    sleep 0.1
  done
  log "redis did not answer PING"; exit 1
}

stop() { # stop NAME PIDFILE
  if alive "$2"; then
    local pid; pid="$(cat "$2")"
    log "stopping $1 (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "$1 did not stop in 30 s; killing"; kill -9 "$pid"; fi
  else
    log "$1 not running (no live pid file)"
  fi
  rm -f "$2"
}

status() {
  local rc=0
  if alive "$KAFKA_PID"; then log "kafka: running (pid $(cat "$KAFKA_PID")) on $KAFKA_HOST:$KAFKA_PORT"
  elif port_open "$KAFKA_PORT"; then log "kafka: port $KAFKA_PORT answers (not started by us)"
  else log "kafka: stopped"; rc=1; fi
  if alive "$REDIS_PID"; then log "redis: running (pid $(cat "$REDIS_PID")) on 127.0.0.1:$REDIS_PORT"
  elif port_open "$REDIS_PORT"; then log "redis: port $REDIS_PORT answers (not started by us)"
  else log "redis: stopped"; rc=1; fi
  return $rc
}

case "${1:-}" in
  up) kafka_up; redis_up ;;
  redis-up) redis_up ;;
  down) stop kafka "$KAFKA_PID"; stop redis "$REDIS_PID" ;;
  status) status ;;
  *) echo "usage: $0 up|down|status|redis-up" >&2; exit 2 ;;
esac
