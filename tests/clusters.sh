#!/usr/bin/env bash
# Start or stop the local test clusters (3 RabbitMQ nodes, a 3x2 Redis Cluster) on spare
# ports, for a hand-run session against clustered servers:
#   tests/clusters.sh up     # starts both in the background, prints BATON_*__URL lines
#                            # (also written to .baton/clusters/env: `set -a; . .baton/clusters/env`)
#   tests/clusters.sh down   # kills everything `up` started and removes its data
# The code is tests/support/clusters.py; the suites start their own clusters themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE_DIR="${BATON_CLUSTERS_DIR:-.baton/clusters}"
case "${1:-}" in
  up|down) exec .venv/bin/python -m tests.support.clusters "$1" --state-dir "$STATE_DIR" ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
