#!/usr/bin/env bash
# Load harness: a LIVE warning to N simulated MQTT sirens through a private Mosquitto, then the
# one-step stop. The daemon, the simulator and the broker are separate processes.
#
# 1. One operator requests a short LIVE signal "now", another approves it; once every siren
#    has reported and been judged, the latency from the approval to each siren's start of
#    sound (its report, corrected by its measured clock offset) as percentiles.
# 2. A LIVE air-raid signal, approved; once every siren sounds, POST /api/stop; the time until
#    the last siren acknowledged its STOP (all_silent_after_ms).
#
#   daemon/bench/live-load.sh [SIRENS]
set -euo pipefail
sirens=${1:-10000}
broker_port=${BROKER_PORT:-18852}
http_port=${HTTP_PORT:-19752}
source "$(dirname "$0")/fleet.sh"
tokens=()
for name in requester approver; do
  out=$(target/release/sirend token --name "$name" --role operator)
  tokens+=("$(printf '%s\n' "$out" | sed -n 's/^token .*: //p')")
  printf '%s\n' "$out" | sed -n '/^\[\[http.tokens\]\]/,$p' >> "$work/sirend.toml"
done
printf '\n[soundings]\ntimezone = "UTC"\nverify_grace_s = 30\n\n[live]\n[[live.signals]]\nname = "burst"\nsequence = [{ pattern = "chime" }]\n' >> "$work/sirend.toml"

start_broker
start_daemon
RUST_LOG=warn target/release/siren-sim mqtt --fleet "$work/fleet.csv" --broker "mqtt://127.0.0.1:$broker_port" > "$work/sim.log" 2>&1 & pids+=($!)

api="http://127.0.0.1:$http_port"
wait_all_ok

post() { curl -s -X POST -H "Authorization: Bearer $1" -H 'Content-Type: application/json' -d "$3" "$api$2"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
live() {
  local id
  id=$(post "${tokens[0]}" /api/activations "{\"signal\":\"$1\",\"reason\":\"load test\"}" | field '["id"]')
  post "${tokens[1]}" "/api/activations/$id/approve" '' > /dev/null
  echo "$id"
}
# Waits until the activation's siren counts satisfy $2 (a Python expression on `c`).
wait_counts() {
  local deadline=$(( $(date +%s) + 600 ))
  until curl -s "$api/api/activations/$1" | python3 -c "import json,sys; c=json.load(sys.stdin)['counts']; sys.exit(0 if ($2) else 1)"; do
    if (( $(date +%s) > deadline )); then echo "gave up: $(curl -s "$api/api/activations/$1" | field "['counts']")"; exit 1; fi
    sleep 1
  done
}

id=$(live burst)
wait_counts "$id" "c.get('done', 0) + c.get('failed', 0) == $sirens"
curl -s "$api/api/activations/$id" | python3 -c '
import collections, json, sys
v = json.load(sys.stdin)
lat = sorted(s["latency_ms"] for s in v["sirens"] if s["latency_ms"] is not None)
pick = lambda q: lat[max(0, min(len(lat), int(-(-q * len(lat) // 1))) - 1)]
print("LIVE now:       %s" % v["counts"])
print("approval to start of sound, ms: p50 %d  p90 %d  p99 %d  max %d  (n=%d)" % (pick(0.5), pick(0.9), pick(0.99), lat[-1], len(lat)))
print("  by 250 ms: %s" % sorted(collections.Counter(l // 250 * 250 for l in lat).items()))
'

id=$(live air-raid)
wait_counts "$id" "c.get('sounding', 0) == $sirens"
stop=$(post "${tokens[0]}" /api/stop '' | field '["id"]')
deadline=$(( $(date +%s) + 300 ))
until [ "$(curl -s "$api/api/stop/$stop" | field '["pending"]')" = 0 ]; do
  if (( $(date +%s) > deadline )); then echo "not every siren confirmed silent"; exit 1; fi
  sleep 0.5
done
curl -s "$api/api/stop/$stop" | python3 -c '
import json, sys
v = json.load(sys.stdin)
after = sorted(s["silent_after_ms"] for s in v["sirens"])
print("STOP:           %d sirens, the last confirmed silent %d ms after the request (p50 %d ms)" % (len(after), v["all_silent_after_ms"], after[len(after) // 2]))
'
