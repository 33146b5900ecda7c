#!/usr/bin/env bash
# bench/restart-gateway.sh PIDFILE LOG URL -- COMMAND...
#
# Restarts a gateway as an operator would: SIGTERM to the process whose pid
# is in PIDFILE, wait for it to exit (SIGKILL after 15 s), start COMMAND in
# the background (output appended to LOG), wait until URL/healthz answers
# (at most 15 s), then write the new pid to PIDFILE and print it. Used by
# bench/run.sh's storm run through loadgen's --restart-cmd.
set -euo pipefail
pidfile=$1 log=$2 url=$3
shift 3
[[ ${1:-} == -- ]] && shift
old=$(cat "$pidfile")
kill -TERM "$old" 2>/dev/null || true
for _ in $(seq 150); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$old" 2>/dev/null || true
"$@" >>"$log" 2>&1 &
new=$!
for _ in $(seq 750); do
	curl -fsS "$url/healthz" >/dev/null 2>&1 && break
	sleep 0.02
done
curl -fsS "$url/healthz" >/dev/null
echo "$new" >"$pidfile"
echo "$new"
