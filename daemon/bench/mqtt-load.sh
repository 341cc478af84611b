#!/usr/bin/env bash
# Load harness: sirend watching N simulated MQTT sirens through a private Mosquitto. The
# daemon, the simulator and the broker are separate processes, so /proc measures the daemon
# alone. Reports the daemon's CPU and resident memory, and the message rate it processed
# against the rate mosquitto_sub drained from the same broker over the same window.
#
#   daemon/bench/mqtt-load.sh [SIRENS] [HEARTBEAT_S] [MEASURE_S]
set -euo pipefail
sirens=${1:-10000}
heartbeat=${2:-30}
measure=${3:-60}
broker_port=${BROKER_PORT:-18850}
http_port=${HTTP_PORT:-19750}
source "$(dirname "$0")/fleet.sh"
printf '\n[liveness]\nheartbeat_s = %s\n' "$heartbeat" >> "$work/sirend.toml"

start_broker
start_daemon
rss0=$(awk '/VmRSS/ {print $2}' "/proc/$daemon/status")
RUST_LOG=warn target/release/siren-sim mqtt --fleet "$work/fleet.csv" --broker "mqtt://127.0.0.1:$broker_port" --heartbeat "$heartbeat" > "$work/sim.log" 2>&1 & pids+=($!)

metric() { curl -s "http://127.0.0.1:$http_port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
start=$(date +%s)
until [ "$(metric 'siren_zone_sirens{zone="hangzhou",state="ok"}')" = "$sirens" ]; do
  sleep 1
  if (( $(date +%s) - start > 300 )); then echo "not every siren became ok:"; curl -s "http://127.0.0.1:$http_port/metrics" | grep "zone=\"hangzhou\""; tail -5 "$work/sirend.log" "$work/sim.log"; exit 1; fi
done
echo "all $sirens sirens ok after $(( $(date +%s) - start )) s"

mosquitto_sub -p "$broker_port" -t 'sirennet/v1/#' -F '%t' > "$work/drained" & pids+=($!)
sleep 2
ticks() { awk '{print $14 + $15}' "/proc/$daemon/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks); r0=$(metric 'siren_link_received_total{link="mqtt"}'); d0=$(wc -l < "$work/drained")
sleep "$measure"
t1=$(ticks); r1=$(metric 'siren_link_received_total{link="mqtt"}'); d1=$(wc -l < "$work/drained")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$daemon/status")

daemon_rate=$(echo "scale=1; ($r1 - $r0) / $measure" | bc)
drain_rate=$(echo "scale=1; ($d1 - $d0) / $measure" | bc)
echo "offered:              $(echo "scale=1; $sirens / $heartbeat" | bc) heartbeats/s (+ status changes)"
echo "daemon processed:     $daemon_rate msg/s"
echo "mosquitto_sub drained: $drain_rate msg/s"
echo "ratio:                $(echo "scale=1; 100 * $daemon_rate / $drain_rate" | bc) %"
echo "daemon cpu:           $(echo "scale=1; 100 * ($t1 - $t0) / $hz / $measure" | bc) % of one core"
echo "daemon rss:           $rss KiB ($((rss / 1024)) MiB) total, $(( (rss - rss0) * 1024 / sirens )) bytes per siren above the idle daemon ($((rss0 / 1024)) MiB idle with the fleet loaded)"
