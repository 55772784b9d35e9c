#!/usr/bin/env bash
# Make sure RabbitMQ and Redis are reachable, starting (or installing) them when we can.
#
# The lookup order, the same as the test fixtures' (tests/conftest.py, explained in
# tests/support/service_lookup.py), for each service:
#   1. BATON_RABBIT__URL / BATON_REDIS__URL set: someone else's server; only wait for it.
#   2. the local default answers (127.0.0.1:5672, 127.0.0.1:6379): use it.
#      (here only: start the installed server, or install it with apt-get as root)
#   3. a Docker engine answers: a container (here `docker compose` with the test overlay
#      tests/services/compose.yml; in the fixtures testcontainers).
#   4. otherwise explain and fail.
set -euo pipefail

WAIT_S=${BATON_SERVICES_WAIT_S:-60}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APT_UPDATED=

say() { printf '%s\n' "$*"; }
die() { printf '%s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# bash's /dev/tcp: no dependency on nc, curl or a client library.
reachable() { timeout 3 bash -c ": >/dev/tcp/$1/$2" 2>/dev/null; }

# Redis answers PING with +PONG only once it has loaded its data.
redis_ready() {
  timeout 3 bash -c 'exec 3<>/dev/tcp/$0/$1 && printf "PING\r\n" >&3 && read -r reply <&3 &&
    [[ $reply == +PONG* || $reply == -NOAUTH* ]]' "$1" "$2" 2>/dev/null
}

# wait_until SECONDS COMMAND...: poll COMMAND once a second until it succeeds or time runs out.
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

# host_port URL DEFAULT_PORT -> "host port" (handles user:pass@, [ipv6], paths and queries).
host_port() {
  local rest=${1#*://} host port=
  rest=${rest%%[/?]*}
  rest=${rest##*@}
  if [[ $rest == \[* ]]; then
    host=${rest%%]*}; host=${host#[}; [[ $rest == *]:* ]] && port=${rest##*]:}
  else
    host=${rest%%:*}; [[ $rest == *:* ]] && port=${rest##*:}
  fi
  printf '%s %s\n' "${host:-127.0.0.1}" "${port:-$2}"
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [[ -z $APT_UPDATED ]]; then apt-get update -qq && APT_UPDATED=1 || return 1; fi
  apt-get install -y -qq "$@" </dev/null
}

compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@"
  elif have docker-compose; then docker-compose "$@"
  else return 1; fi
}

start_rabbitmq() {
  # -detached returns before the node is up; a node that is already booting refuses a
  # second start, which is fine: either way we wait for the port.
  rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_until "$WAIT_S" reachable 127.0.0.1 5672 || return 1
  ! have rabbitmqctl || rabbitmqctl -q await_startup --timeout "$WAIT_S" >/dev/null
}

start_redis() {
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null || true
  wait_until "$WAIT_S" redis_ready 127.0.0.1 6379
}

# ensure NAME PORT SERVER_BINARY READY_CHECK: the local fallback chain for one service.
ensure_local() {
  local name=$1 port=$2 binary=$3 ready=$4
  if "$ready" 127.0.0.1 "$port"; then
    say "$name: reachable at 127.0.0.1:$port"; return
  fi
  if ! have "$binary" && [[ $(id -u) == 0 ]] && have apt-get; then
    say "$name: not running and not installed; installing $binary with apt-get"
    apt_install "$binary" >/dev/null || say "$name: apt-get install $binary failed"
  fi
  if have "$binary"; then
    say "$name: starting $binary (waiting up to ${WAIT_S}s)"
    "start_$name" || die "$name: started $binary but it is not ready at 127.0.0.1:$port" \
      "after ${WAIT_S}s; see its log (/var/log/$name/)."
  elif have docker && docker info >/dev/null 2>&1; then
    say "$name: starting the $name container with docker compose"
    # the test overlay: the suite's own throwaway users, not the deployment's (no guest there)
    (cd "$ROOT" && compose -f docker-compose.yml -f tests/services/compose.yml up -d "$name") ||
      die "$name: docker compose up -d $name failed."
    wait_until "$WAIT_S" "$ready" 127.0.0.1 "$port" ||
      die "$name: the container did not become ready at 127.0.0.1:$port after ${WAIT_S}s."
  else
    die "$name: nothing answers at 127.0.0.1:$port and it cannot be started here." \
      "Install it (as root: apt-get install $binary), or run 'docker compose up -d $name'" \
      "with a Docker engine, or point BATON_$([[ $name == rabbitmq ]] && echo RABBIT || echo REDIS)__URL" \
      "at a running server."
  fi
  say "$name: reachable at 127.0.0.1:$port"
}

# ensure_remote NAME URL DEFAULT_PORT: a server we were told about; we only wait for it.
ensure_remote() {
  local name=$1 host port
  read -r host port < <(host_port "$2" "$3")
  wait_until "$WAIT_S" reachable "$host" "$port" ||
    die "$name: nothing answers at $host:$port (from its BATON_ URL) after ${WAIT_S}s."
  say "$name: reachable at $host:$port"
}

if [[ -n ${BATON_RABBIT__URL:-} ]]; then
  port=5672; [[ $BATON_RABBIT__URL == amqps:* ]] && port=5671
  ensure_remote rabbitmq "$BATON_RABBIT__URL" "$port"
else
  ensure_local rabbitmq 5672 rabbitmq-server reachable
fi
if [[ -n ${BATON_REDIS__URL:-} ]]; then
  ensure_remote redis "$BATON_REDIS__URL" 6379
else
  ensure_local redis 6379 redis-server redis_ready
fi
