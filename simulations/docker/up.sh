#!/usr/bin/env bash
# Brings the docker network of docker-compose.yml up: builds the image (build.sh), starts the five
# nodes, and waits until every one is healthy (answers `udht-node ctl status`).
#
#   simulations/docker/up.sh                          # the one command to bring the network up
#   COMPOSE_PROJECT_NAME=udht docker-compose ps      # then, e.g.
#   COMPOSE_PROJECT_NAME=udht docker-compose exec -T node2 /udht-node ctl status
#   COMPOSE_PROJECT_NAME=udht docker-compose down -v  # stop and forget the tables
#
# Environment: HEALTH_TIMEOUT seconds (default 60), SKIP_BUILD=1 to use the image as it is.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export COMPOSE_PROJECT_NAME=udht
export COMPOSE_FILE="$ROOT/docker-compose.yml"
NODES=(node1 node2 node3 node4 node5)
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-60}"

log() { echo "up.sh: $*" >&2; }

# `docker compose` (v2) if present, else `docker-compose` (v1).
if docker compose version >/dev/null 2>&1; then DC=(docker compose); else DC=(docker-compose); fi
dc() { "${DC[@]}" "$@"; }

# The health of one service's container: healthy, starting, unhealthy, or missing.
health() {
  local id
  id="$(dc ps -q "$1" 2>/dev/null)"
  [ -n "$id" ] || { echo missing; return; }
  docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" \
    2>/dev/null || echo missing
}

wait_healthy() {
  local deadline=$((SECONDS + HEALTH_TIMEOUT)) node state pending
  while :; do
    pending=()
    for node in "${NODES[@]}"; do
      state="$(health "$node")"
      [ "$state" = healthy ] || pending+=("$node=$state")
    done
    [ ${#pending[@]} -eq 0 ] && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "not healthy after ${HEALTH_TIMEOUT}s: ${pending[*]}"
      dc ps >&2 || true
      dc logs --tail 30 >&2 || true
      return 1
    fi
    sleep 1
  done
}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  "$ROOT/simulations/docker/build.sh"
fi
# The private network's key, shared by every node (never overwritten once written).
KEY="$ROOT/simulations/docker/swarm.key"
if [ ! -f "$KEY" ]; then
  "$ROOT/target/x86_64-unknown-linux-gnu/release/udht-node" keygen-psk "$KEY" >&2
fi
log "starting ${NODES[*]}"
dc up -d "${NODES[@]}"
wait_healthy
log "all ${#NODES[@]} nodes healthy"
