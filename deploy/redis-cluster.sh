#!/usr/bin/env bash
# A local Redis Cluster for trying feedgate on one machine: three masters with
# one replica each, on loopback, their files in a temporary directory (never in
# the checkout). Needs redis-server and redis-cli 7 or later.
#
#   deploy/redis-cluster.sh start [--base-port 7100]
#       starts six nodes on ports 7100-7105 (cluster bus 7106-7111), or on the
#       next block of twelve ports when one is taken, and prints the seed list
#       to give --redis-cluster (127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7102)
#   deploy/redis-cluster.sh stop [--base-port 7100]
#       stops the cluster whose first seed is on that port and removes its
#       files
#
# The nodes run in the background of the calling shell (not as daemons), so
# they end with it; `stop` ends them earlier.
set -euo pipefail

cmd=${1:-start}
if [ $# -gt 0 ]; then shift; fi
port=7100
while [ $# -gt 0 ]; do
  case $1 in
    --base-port) port=$2; shift 2 ;;
    *) echo "redis-cluster.sh: unknown argument $1 (use: start|stop [--base-port N])" >&2; exit 2 ;;
  esac
done
# What a started cluster leaves to stop it: its process ids and data dir.
state_of() { echo "${TMPDIR:-/tmp}/feedgate-redis-cluster-$1"; }

case $cmd in
start)
  for tool in redis-server redis-cli; do
    command -v "$tool" > /dev/null || { echo "redis-cluster.sh: $tool not found (apt-get install redis-server)" >&2; exit 1; }
  done
  dir=$(mktemp -d "${TMPDIR:-/tmp}/feedgate-redis-cluster-data.XXXXXX")
  # Six nodes on twelve consecutive ports from $port (clients, then cluster
  # buses); when one is taken, or another cluster of this script uses the
  # block, the next block of twelve.
  base=$port
  for attempt in $(seq 20); do
    state=$(state_of "$base")
    if ! mkdir "$state" 2> /dev/null; then
      base=$((base + 12))
      continue
    fi
    echo "$dir" > "$state/data"
    nodes=()
    for i in $(seq 0 5); do
      p=$((base + i))
      mkdir -p "$dir/$p"
      redis-server --port "$p" --bind 127.0.0.1 --dir "$dir/$p" --logfile "$dir/$p/redis.log" \
        --daemonize no --save "" --appendonly yes --appendfsync everysec \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-port $((base + 6 + i)) \
        --cluster-node-timeout 2000 --repl-diskless-sync-delay 0 > /dev/null 2>&1 &
      echo $! > "$state/$p.pid"
      nodes+=("127.0.0.1:$p")
    done
    up=yes
    for i in $(seq 0 5); do
      p=$((base + i))
      for _ in $(seq 100); do
        redis-cli -p "$p" ping 2> /dev/null | grep -q PONG && break
        kill -0 "$(cat "$state/$p.pid")" 2> /dev/null || break
        sleep 0.1
      done
      # Answered by our node, not by another server on that port.
      redis-cli -p "$p" ping 2> /dev/null | grep -q PONG && kill -0 "$(cat "$state/$p.pid")" 2> /dev/null || up=no
    done
    [ "$up" = yes ] && break
    for f in "$state"/*.pid; do kill "$(cat "$f")" 2> /dev/null || true; done
    rm -rf "$state"
    [ "$attempt" = 20 ] && { echo "redis-cluster.sh: could not start six nodes from port $port (ports taken?); see $dir" >&2; exit 1; }
    base=$((base + 12))
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes > "$dir/create.log" 2>&1 ||
    { cat "$dir/create.log" >&2; exit 1; }
  # Ready when every node reports the cluster ok and sees three replicas.
  for i in $(seq 0 5); do
    for _ in $(seq 200); do
      if redis-cli -p $((base + i)) cluster info 2> /dev/null | grep -q '^cluster_state:ok' &&
        [ "$(redis-cli -p $((base + i)) cluster nodes 2> /dev/null | awk '$3 ~ /slave/' | wc -l)" = 3 ]; then
        continue 2
      fi
      sleep 0.1
    done
    echo "redis-cluster.sh: node $((base + i)) does not report the cluster whole after 20 s; see $dir" >&2
    exit 1
  done
  echo "127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
  ;;
stop)
  state=$(state_of "$port")
  [ -d "$state" ] || { echo "redis-cluster.sh: no cluster of this script has its first seed on port $port" >&2; exit 1; }
  for f in "$state"/*.pid; do kill "$(cat "$f")" 2> /dev/null || true; done
  for f in "$state"/*.pid; do
    for _ in $(seq 100); do kill -0 "$(cat "$f")" 2> /dev/null || break; sleep 0.1; done
  done
  rm -rf "$(cat "$state/data")" "$state"
  ;;
*)
  echo "redis-cluster.sh: unknown command $cmd (use: start|stop [--base-port N])" >&2
  exit 2
  ;;
esac
