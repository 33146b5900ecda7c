#!/usr/bin/env bash
# bench/run.sh — feedgate's load runs (BENCHMARKS.md), on loopback only.
#
# Builds the gateway and loadgen, and for each store starts a private
# redis-server (free port, appendonly no) when needed and a gateway on a free
# port with its own data directory, creates the user `bench`, runs the
# chosen runs, and stops everything it started. Every step has a time limit.
#
#   bench/run.sh                      everything, full size (several minutes)
#   SMALL=1 bench/run.sh              the same runs with small numbers (smoke)
#   STORES=redis RUNS=retrieve bench/run.sh
#
# Environment:
#   STORES     "redis embedded" (default) or one of them, or cluster: two gateway nodes on a
#              local Redis Cluster of 3 masters with 1 replica each (deploy/redis-cluster.sh);
#              its sse run spreads the clients over both nodes
#   RUNS       any of: retrieve floor ndjson sse sse-h2 ws poll idle storm (default: all but
#              sse-h2, ws and poll); floor is bench/floor with the NDJSON sizes, the machine's
#              own limit to compare the NDJSON run with (it runs once, with the first store);
#              sse-h2 is the sse run over TLS and HTTP/2 (a self-signed certificate made with
#              openssl, H2_STREAMS clients per connection, default 100); appends is
#              acknowledged fat-ping appends/s (APPEND_CONNS publishers over APPEND_TOPICS
#              topics, DURATION) without and with --redis-wait-replicas 1 (a replica is
#              started for the redis store), then with APPEND_LISTENERS idle streams open, with
#              Redis commands, bytes and CPU per append
#   SMALL=1    small clients/items/durations
#   NDJSON_CLIENTS, NDJSON_ITEMS, NDJSON_RATE, SSE_CLIENTS, SSE_ITEMS, IDLE_CLIENTS,
#   IDLE_HOLD, WS_CLIENTS, WS_ITEMS, POLL_CLIENTS, POLL_ITEMS, STORM_CLIENTS
#              the sizes of the full runs
#   DURATION   retrieve measured time per round (default 10s)
#   ROUNDS     retrieve rounds, alternating with raw Redis; medians reported (default 3)
#   OUT        directory for logs and JSON results (default: a new temp dir)
#   GATEWAY    a gateway binary to measure instead of building this checkout's (to compare
#              two versions with the same loadgen: build the other one with go build)
set -euo pipefail

cd "$(dirname "$0")/.."
STORES=${STORES:-"redis embedded"}
RUNS=${RUNS:-"retrieve floor ndjson sse idle storm"}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$(mktemp -d /tmp/feedgate-bench.XXXXXX)}
mkdir -p "$OUT"
BIN=$OUT/bin
mkdir -p "$BIN"

if [[ -n "${SMALL:-}" ]]; then
	DURATION=${DURATION_SMALL:-3s}
	ROUNDS=1
	NDJSON_CLIENTS=200 NDJSON_ITEMS=20 NDJSON_RATE=10
	SSE_CLIENTS=200 SSE_ITEMS=20
	IDLE_CLIENTS=500 IDLE_HOLD=3s
	WS_CLIENTS=200 WS_ITEMS=20 POLL_CLIENTS=200 POLL_ITEMS=20
	STORM_CLIENTS=200
else
	# The full sizes (BENCHMARKS.md names the targets); each may be set in the
	# environment instead.
	NDJSON_CLIENTS=${NDJSON_CLIENTS:-10000} NDJSON_ITEMS=${NDJSON_ITEMS:-100} NDJSON_RATE=${NDJSON_RATE:-10}
	SSE_CLIENTS=${SSE_CLIENTS:-5000} SSE_ITEMS=${SSE_ITEMS:-20}
	IDLE_CLIENTS=${IDLE_CLIENTS:-19000} IDLE_HOLD=${IDLE_HOLD:-20s}
	WS_CLIENTS=${WS_CLIENTS:-5000} WS_ITEMS=${WS_ITEMS:-20}
	POLL_CLIENTS=${POLL_CLIENTS:-2000} POLL_ITEMS=${POLL_ITEMS:-20}
	STORM_CLIENTS=${STORM_CLIENTS:-10000}
fi
APPEND_CONNS=${APPEND_CONNS:-50} APPEND_TOPICS=${APPEND_TOPICS:-1000} APPEND_LISTENERS=${APPEND_LISTENERS:-1000}
[[ -z "${SMALL:-}" ]] || { APPEND_TOPICS=100; APPEND_LISTENERS=100; }

# Every client of a run is user bench, from a few loopback addresses: no
# per-user connection limit, no cap on connections not yet authenticated.
export FEEDGATE_MAX_CONNS_PER_USER=${FEEDGATE_MAX_CONNS_PER_USER:-0}
export FEEDGATE_MAX_UNAUTH_CONNS=${FEEDGATE_MAX_UNAUTH_CONNS:-0}

PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	done
	PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '\n=== %s\n' "$*" | tee -a "$OUT/summary.txt" >&2; }

echo "building into $BIN" >&2
if [[ -n ${GATEWAY:-} ]]; then cp "$GATEWAY" "$BIN/gateway"; else go build -o "$BIN/gateway" ./cmd/gateway; fi
go build -o "$BIN/loadgen" ./cmd/loadgen
go build -o "$BIN/floor" ./bench/floor
go build -o "$BIN/httpfloor" ./bench/httpfloor
LG=$BIN/loadgen
FLOOR_DONE=

# stop_pid PID: SIGTERM, wait up to 15 s, then SIGKILL.
stop_pid() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	echo "pid $pid did not stop in 15 s; killing it" >&2
	kill -KILL "$pid" 2>/dev/null || true
}

start_redis() {
	REDIS_PORT=$("$LG" free-port)
	mkdir -p "$OUT/redis"
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --appendonly no --save '' \
		--dir "$OUT/redis" --logfile "$OUT/redis/redis.log" --daemonize no &
	REDIS_PID=$!
	PIDS+=("$REDIS_PID")
	for _ in $(seq 100); do
		redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	redis-cli -p "$REDIS_PORT" ping >/dev/null
	REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
}

# make_cert: a self-signed certificate for 127.0.0.1 in $OUT/tls (once).
make_cert() {
	[[ -s $OUT/tls/cert.pem ]] && return 0
	mkdir -p "$OUT/tls"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
		-addext subjectAltName=IP:127.0.0.1 -keyout "$OUT/tls/key.pem" -out "$OUT/tls/cert.pem" 2>/dev/null
}

# start_gateway STORE [fresh]: serve on a free port (a fresh data directory for
# the embedded store when "fresh"; HTTPS with $OUT/tls's certificate when
# GW_TLS is set); sets GW_URL, GW_PID, STORE_FLAGS.
start_gateway() {
	local store=$1 fresh=${2:-}
	local tls_flags=() curl_flags=()
	GW_PORT=$("$LG" free-port)
	GW_URL=http://127.0.0.1:$GW_PORT
	if [[ -n ${GW_TLS:-} ]]; then
		GW_URL=https://127.0.0.1:$GW_PORT
		tls_flags=(--tls-cert "$OUT/tls/cert.pem" --tls-key "$OUT/tls/key.pem")
		curl_flags=(--cacert "$OUT/tls/cert.pem")
	fi
	if [[ $store == redis ]]; then
		STORE_FLAGS=(--redis-url "$REDIS_URL")
	elif [[ $store == cluster ]]; then
		STORE_FLAGS=(--redis-cluster "$CLUSTER_SEEDS")
	else
		[[ -z $fresh ]] || rm -rf "$OUT/data"
		STORE_FLAGS=(--data-dir "$OUT/data")
	fi
	GW_CMD=("$BIN/gateway" serve --listen "127.0.0.1:$GW_PORT" "${STORE_FLAGS[@]}" --allow-private
		--log-level warn "${tls_flags[@]}" ${GATEWAY_FLAGS:-})
	GW_LOG=$OUT/gateway-$store.log
	"${GW_CMD[@]}" >>"$GW_LOG" 2>&1 &
	GW_PID=$!
	PIDS+=("$GW_PID")
	for _ in $(seq 100); do
		curl "${curl_flags[@]}" -fsS "$GW_URL/healthz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl "${curl_flags[@]}" -fsS "$GW_URL/healthz" >/dev/null
}

# restart_gateway STORE: a new gateway process on the same store, so that
# memory readings start from a fresh process (both nodes on the cluster).
restart_gateway() {
	stop_pid "$GW_PID"
	if [[ $1 == cluster ]]; then
		stop_pid "$GW2_PID"
		start_gateway2
	fi
	start_gateway "$1"
	echo "(gateway restarted: pid $GW_PID at $GW_URL)" >&2
}

# start_cluster: a local Redis Cluster (deploy/redis-cluster.sh); sets
# CLUSTER_SEEDS, CLUSTER_BASE, CLUSTER_PIDS (every node), CLUSTER_MASTERS.
start_cluster() {
	CLUSTER_SEEDS=$(TMPDIR=$OUT deploy/redis-cluster.sh start --base-port "$("$LG" free-port)")
	CLUSTER_BASE=$(echo "${CLUSTER_SEEDS%%,*}" | cut -d: -f2)
	CLUSTER_PIDS=$(cat "$OUT/feedgate-redis-cluster-$CLUSTER_BASE"/*.pid | paste -sd, -)
	local pid
	for pid in ${CLUSTER_PIDS//,/ }; do PIDS+=("$pid"); done
	# The masters serving slots (CLUSTER NODES lists the slots from field 9 on).
	CLUSTER_MASTERS=$(redis-cli -p "$CLUSTER_BASE" cluster nodes | awk '$3 ~ /master/ && NF > 8 {split($2, a, "@"); print a[1]}' | paste -sd, -)
}

stop_cluster() {
	TMPDIR=$OUT deploy/redis-cluster.sh stop --base-port "$CLUSTER_BASE" || true
}

# start_gateway2: the second gateway node of the cluster store; sets GW2_URL,
# GW2_PID.
start_gateway2() {
	GW2_PORT=$("$LG" free-port)
	GW2_URL=http://127.0.0.1:$GW2_PORT
	"$BIN/gateway" serve --listen "127.0.0.1:$GW2_PORT" --redis-cluster "$CLUSTER_SEEDS" --allow-private \
		--log-level warn --role api ${GATEWAY_FLAGS:-} >>"$OUT/gateway-cluster-2.log" 2>&1 &
	GW2_PID=$!
	PIDS+=("$GW2_PID")
	for _ in $(seq 100); do
		curl -fsS "$GW2_URL/healthz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -fsS "$GW2_URL/healthz" >/dev/null
}

# appends_run NAME FLAGS...: the appends measure through the store's
# gateway(s), with its Redis servers' counters.
appends_run() {
	local name=$1
	shift
	local urls=$GW_URL gwpids=$GW_PID redis=() code=0
	if [[ $store == cluster ]]; then
		urls=$GW_URL,$GW2_URL gwpids=$GW_PID,$GW2_PID
		redis=(--redis-addrs "$CLUSTER_MASTERS" --redis-pids "$CLUSTER_PIDS")
	elif [[ $store == redis ]]; then
		redis=(--redis-addrs "127.0.0.1:$REDIS_PORT" --redis-pids "$REDIS_PID${REPLICA_PID:+,$REPLICA_PID}")
	fi
	timeout --kill-after=10 900 "$LG" appends --url "$urls" --conns "$APPEND_CONNS" --topics "$APPEND_TOPICS" \
		--duration "$DURATION" --gateway-pids "$gwpids" "${redis[@]}" "$@" --json "$OUT/$name.json" \
		2> >(tee "$OUT/$name.err" >&2) | tee "$OUT/$name.txt" | tee -a "$OUT/summary.txt" || code=$?
	[[ $code == 0 ]] || echo "($name: loadgen exit status $code)" | tee -a "$OUT/summary.txt" >&2
}

# start_replica: a replica of the redis store's server (for WAIT 1).
start_replica() {
	[[ -z ${REPLICA_PID:-} ]] || return 0
	local port
	port=$("$LG" free-port)
	mkdir -p "$OUT/replica"
	redis-server --port "$port" --bind 127.0.0.1 --appendonly no --save '' --replicaof 127.0.0.1 "$REDIS_PORT" \
		--dir "$OUT/replica" --logfile "$OUT/replica/redis.log" --daemonize no &
	REPLICA_PID=$!
	PIDS+=("$REPLICA_PID")
	for _ in $(seq 100); do
		redis-cli -p "$port" info replication 2>/dev/null | grep -q 'master_link_status:up' && break
		sleep 0.1
	done
}

# add_user: create `bench`, a subscriber as users are (not an admin, whose
# reads skip the subscription check); exports its token.
add_user() {
	TOKEN=$(timeout 30 "$BIN/gateway" user add bench --rights subscribe,unsubscribe,list,retrieve,publish "${STORE_FLAGS[@]}" 2>/dev/null | tail -n 1)
	[[ -n $TOKEN ]] || { echo "gateway user add printed no token" >&2; exit 1; }
	export LOADGEN_TOKEN=$TOKEN
}

# lg NAME ARGS...: run loadgen with a time limit, keep its output.
lg() {
	local name=$1
	shift
	local code=0
	timeout --kill-after=10 1200 "$LG" "$@" --url "$GW_URL" --json "$OUT/$name.json" \
		2> >(tee "$OUT/$name.err" >&2) | tee "$OUT/$name.txt" | tee -a "$OUT/summary.txt" || code=$?
	[[ $code == 0 ]] || echo "($name: loadgen exit status $code)" | tee -a "$OUT/summary.txt" >&2
}

for store in $STORES; do
	if [[ $store == redis ]]; then start_redis; fi
	if [[ $store == cluster ]]; then
		start_cluster
		start_gateway2
	fi
	start_gateway "$store" fresh
	add_user
	log "store $store: gateway pid $GW_PID at $GW_URL"
	timeout 60 "$LG" seed --url "$GW_URL" --items 50 | tee -a "$OUT/summary.txt"

	for run in $RUNS; do
		case $run in
		retrieve)
			log "$store: retrieve count=10 JSON, 50 connections, $DURATION"
			if [[ $store == cluster ]]; then
				lg "$store-retrieve" retrieve --conns 50 --duration "$DURATION" --rounds "$ROUNDS" --count 10 --format json \
					--gateway-pid "$GW_PID"
			elif [[ $store == redis ]]; then
				lg "$store-retrieve" retrieve --conns 50 --duration "$DURATION" --rounds "$ROUNDS" --count 10 --format json \
					--gateway-pid "$GW_PID" --compare-redis --redis-url "$REDIS_URL" --redis-pid "$REDIS_PID"
				# The same bytes from a bare net/http server (bench/httpfloor, one write per
				# answer as the gateway's): what net/http and the kernel cost, against raw Redis.
				HF_PORT=$("$LG" free-port)
				"$BIN/httpfloor" --coalesce --listen "127.0.0.1:$HF_PORT" --auth "bench:$TOKEN" \
					--from "$GW_URL/?hub.mode=retrieve&format=json&count=10&hub.topic=http%3A%2F%2F127.0.0.1%3A9%2Floadgen%2Ffeed" \
					>>"$OUT/httpfloor.log" 2>&1 &
				HF_PID=$!
				PIDS+=("$HF_PID")
				for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$HF_PORT/" >/dev/null 2>&1 && break; sleep 0.1; done
				log "net/http floor: the same answer from bench/httpfloor, 50 connections, $DURATION"
				GW_URL_SAVED=$GW_URL
				GW_URL=http://127.0.0.1:$HF_PORT
				lg "httpfloor-retrieve" retrieve --conns 50 --duration "$DURATION" --rounds "$ROUNDS" --count 10 --format json \
					--gateway-pid "$HF_PID" --compare-redis --redis-url "$REDIS_URL" --redis-pid "$REDIS_PID"
				GW_URL=$GW_URL_SAVED
				stop_pid "$HF_PID"
			else
				lg "$store-retrieve" retrieve --conns 50 --duration "$DURATION" --rounds "$ROUNDS" --count 10 --format json \
					--gateway-pid "$GW_PID"
			fi
			;;
		floor)
			[[ -z $FLOOR_DONE ]] || continue
			FLOOR_DONE=1
			log "floor: $NDJSON_CLIENTS loopback connections, $NDJSON_ITEMS messages at $NDJSON_RATE/s (no gateway)"
			timeout 600 "$BIN/floor" --conns "$NDJSON_CLIENTS" --items "$NDJSON_ITEMS" --rate "$NDJSON_RATE" --size 600 \
				2>&1 | tee "$OUT/floor.txt" | tee -a "$OUT/summary.txt"
			;;
		ndjson)
			restart_gateway "$store"
			log "$store: $NDJSON_CLIENTS NDJSON clients, $NDJSON_ITEMS items at $NDJSON_RATE/s"
			lg "$store-ndjson" stream --kind ndjson --clients "$NDJSON_CLIENTS" --items "$NDJSON_ITEMS" \
				--rate "$NDJSON_RATE" --gateway-pid "$GW_PID"
			;;
		sse)
			restart_gateway "$store"
			log "$store: $SSE_CLIENTS SSE clients, $SSE_ITEMS items back-to-back"
			if [[ $store == cluster ]]; then
				log "(the clients spread over the two nodes, $GW_URL and $GW2_URL)"
				lg "$store-sse" stream --kind sse --clients "$SSE_CLIENTS" --items "$SSE_ITEMS" --rate 0 \
					--gateway-pid "$GW_PID" --also-url "$GW2_URL"
			else
				lg "$store-sse" stream --kind sse --clients "$SSE_CLIENTS" --items "$SSE_ITEMS" --rate 0 \
					--gateway-pid "$GW_PID"
			fi
			;;
		appends)
			restart_gateway "$store"
			log "$store: acknowledged fat-ping appends, $APPEND_CONNS publishers over $APPEND_TOPICS topics, $DURATION"
			appends_run "$store-appends"
			if [[ $store == embedded ]]; then continue; fi
			log "$store: the same with $APPEND_LISTENERS idle streams open on the topics"
			appends_run "$store-appends-listeners" --listeners "$APPEND_LISTENERS"
			[[ $store == redis ]] && start_replica
			GATEWAY_FLAGS="--redis-wait-replicas 1" restart_gateway "$store"
			log "$store: the same acknowledged by a replica (--redis-wait-replicas 1)"
			appends_run "$store-appends-wait1"
			restart_gateway "$store" # without WAIT again
			;;
		sse-h2)
			make_cert
			GW_TLS=1 restart_gateway "$store"
			log "$store: $SSE_CLIENTS SSE clients over TLS and HTTP/2 (${H2_STREAMS:-100} per connection), $SSE_ITEMS items back-to-back"
			lg "$store-sse-h2" stream --kind sse --clients "$SSE_CLIENTS" --items "$SSE_ITEMS" --rate 0 \
				--gateway-pid "$GW_PID" --ca "$OUT/tls/cert.pem" --h2-streams "${H2_STREAMS:-100}"
			restart_gateway "$store" # plain HTTP again for the runs after this one
			;;
		ws)
			restart_gateway "$store"
			log "$store: $WS_CLIENTS WebSocket clients, $WS_ITEMS items back-to-back"
			lg "$store-ws" stream --kind ws --clients "$WS_CLIENTS" --items "$WS_ITEMS" --rate 0 \
				--gateway-pid "$GW_PID"
			;;
		poll)
			restart_gateway "$store"
			log "$store: $POLL_CLIENTS long-poll clients, $POLL_ITEMS items at 10/s"
			lg "$store-poll" stream --kind poll --clients "$POLL_CLIENTS" --items "$POLL_ITEMS" --rate 10 \
				--gateway-pid "$GW_PID"
			;;
		idle)
			restart_gateway "$store"
			log "$store: $IDLE_CLIENTS idle NDJSON connections held $IDLE_HOLD, then one item to all"
			lg "$store-idle" stream --kind ndjson --clients "$IDLE_CLIENTS" --items 1 --hold "$IDLE_HOLD" \
				--connect-concurrency 800 --gateway-pid "$GW_PID"
			;;
		storm)
			restart_gateway "$store"
			log "$store: reconnect storm, $STORM_CLIENTS SSE clients, gateway restarted (SIGTERM, start)"
			echo "$GW_PID" >"$OUT/storm.pid"
			lg "$store-storm" storm --clients "$STORM_CLIENTS" --before 5 --during 5 \
				--restart-cmd "bench/restart-gateway.sh $OUT/storm.pid $GW_LOG $GW_URL -- ${GW_CMD[*]}"
			GW_PID=$(cat "$OUT/storm.pid")
			PIDS+=("$GW_PID")
			;;
		*)
			echo "unknown run $run (use retrieve floor ndjson sse sse-h2 ws poll idle storm appends)" >&2
			exit 2
			;;
		esac
	done

	stop_pid "$GW_PID"
	if [[ $store == redis ]]; then
		stop_pid "$REDIS_PID"
		[[ -z ${REPLICA_PID:-} ]] || stop_pid "$REPLICA_PID"
		REPLICA_PID=
	fi
	if [[ $store == cluster ]]; then
		stop_pid "$GW2_PID"
		stop_cluster
	fi
	PIDS=()
done
log "done; results in $OUT (summary.txt, *.json, gateway logs)"
