#!/bin/sh
# One shot (docker-compose.cluster.yml's redis-cluster-init, deploy/k8s/overlays/cluster's
# Job): make the six nodes one Redis Cluster of three primaries with a replica each. Safe to
# run again: a cluster already formed is left alone. As baton-cluster-admin, whose password
# is REDIS_CLUSTER_ADMIN_PASSWORD (the default user is off on every node).
# Usage: cluster-init.sh HOST... (six node names; port REDIS_PORT, default 6379)
set -eu
port="${REDIS_PORT:-6379}"
export REDISCLI_AUTH="$REDIS_CLUSTER_ADMIN_PASSWORD"
cli() { redis-cli --no-auth-warning --user baton-cluster-admin "$@"; }

formed() { cli -h "$1" -p "$port" cluster info | grep -q '^cluster_state:ok'; }

if formed "$1"; then
    echo "redis cluster already formed"
    exit 0
fi
nodes=""
for host in "$@"; do
    # CLUSTER MEET takes addresses: resolve each name (a pod's or container's current IP).
    ip=$(getent hosts "$host" | awk '{print $1; exit}')
    [ -n "$ip" ] || { echo "$host does not resolve yet"; exit 1; }
    nodes="$nodes $ip:$port"
done
# shellcheck disable=SC2086 # one argument per node
cli --cluster create $nodes --cluster-replicas 1 --cluster-yes
tries=0
until formed "$1"; do  # the nodes agree on the slot map within a few gossip rounds
    tries=$((tries + 1))
    [ "$tries" -le 60 ] || { echo "cluster not ok after 60 s"; exit 1; }
    sleep 1
done
echo "redis cluster formed"
