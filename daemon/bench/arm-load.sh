#!/usr/bin/env bash
# Load harness: sirend arms N simulated MQTT sirens for one ad-hoc chime, through a private
# Mosquitto, with the simulator's clocks up to ±2 s off. The daemon, the simulator and the
# broker are separate processes. Reports how long arming took (time sync, correction and ARM
# for every siren: from the campaign's arming_began to all_armed, as the daemon recorded them),
# then the verdicts and the start skew of the sounding.
#
#   daemon/bench/arm-load.sh [SIRENS]
set -euo pipefail
sirens=${1:-10000}
broker_port=${BROKER_PORT:-18851}
http_port=${HTTP_PORT:-19751}
source "$(dirname "$0")/fleet.sh"
token_out=$(target/release/sirend token --name bench --role operator)
token=$(printf '%s\n' "$token_out" | sed -n 's/^token .*: //p')
printf '%s\n' "$token_out" | sed -n '/^\[\[http.tokens\]\]/,$p' >> "$work/sirend.toml"
# Arming starts as soon as the sounding is created (the lead exceeds the time to the instant).
printf '\n[soundings]\ntimezone = "UTC"\nlead_s = 120\narm_cutoff_s = 5\nverify_grace_s = 60\n' >> "$work/sirend.toml"

start_broker
start_daemon
RUST_LOG=warn target/release/siren-sim mqtt --fleet "$work/fleet.csv" --broker "mqtt://127.0.0.1:$broker_port" > "$work/sim.log" 2>&1 & pids+=($!)

api="http://127.0.0.1:$http_port"
wait_all_ok
start=$(date +%s)

at=$(date -u -d '+40 seconds' +%Y-%m-%dT%H:%M:%SZ)
created=$(curl -s -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d "{\"at\":\"$at\",\"kind\":\"chime\",\"sequence\":[{\"pattern\":\"chime\"}]}" "$api/api/soundings")
id=$(printf '%s' "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "ad-hoc chime $id at $at"
summary() { curl -s "$api/api/soundings?limit=5" | python3 -c "import json,sys; c=[c for c in json.load(sys.stdin) if c['id']==$id][0]; print(json.dumps(c))"; }
while :; do
  s=$(summary)
  phase=$(printf '%s' "$s" | python3 -c 'import json,sys; print(json.load(sys.stdin)["phase"])')
  case $phase in done|missed|cancelled) break ;; esac
  if (( $(date +%s) - start > 600 )); then echo "the campaign did not end: $s"; exit 1; fi
  sleep 2
done
printf '%s' "$s" | python3 -c '
import json, sys
from datetime import datetime
c = json.load(sys.stdin)
t = lambda v: datetime.fromisoformat(v.replace("Z", "+00:00"))
print("phase:         ", c["phase"])
print("armed:          %d of %d" % (c["armed"], c["targets"]))
if c["all_armed"]:
    print("arming took:    %.2f s (arming_began %s, all_armed %s)" % ((t(c["all_armed"]) - t(c["arming_began"])).total_seconds(), c["arming_began"], c["all_armed"]))
else:
    print("arming took:    not every siren was armed")
print("passed:        ", c["passed"], " failed:", c["failed"], c["failures"])
print("start skew ms:  p50 %(p50).3f  p99 %(p99).3f  max %(max).3f  (n=%(count)d)" % c["skew_ms"])
'
