#!/usr/bin/env bash
# Load harness: N simulated MQTT sirens in one siren-sim process against a private Mosquitto.
# Reports the process's CPU use and resident memory once every siren has connected, and the
# message rate the broker delivered to a subscriber. Results go in BENCHMARKS.md.
#
#   simulator/bench/mqtt-fleet.sh [SIRENS] [HEARTBEAT_S] [MEASURE_S]
set -euo pipefail
sirens=${1:-10000}
heartbeat=${2:-30}
measure=${3:-60}
port=${PORT:-18830}
cd "$(dirname "$0")/../.."

work=$(mktemp -d)
sim_pid="" sub_pid="" broker_pid=""
cleanup() { kill "$sim_pid" "$sub_pid" "$broker_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release -q -p siren-sim
sim=target/release/siren-sim
$sim fleet generate --sirens "$sirens" --seed 1 --serial-share 0 --out "$work/fleet" >/dev/null

ulimit -n "$(ulimit -Hn)"  # the broker holds one socket per siren too
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\n' "$port" > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >/dev/null 2>&1 &
broker_pid=$!
sleep 1

# Count what the broker delivers (everything but our own subscription's echo).
mosquitto_sub -p "$port" -t 'sirennet/v1/#' -F '%t' > "$work/messages" &
sub_pid=$!

start=$(date +%s.%N)
$sim mqtt --fleet "$work/fleet/fleet.csv" --broker "mqtt://127.0.0.1:$port" --heartbeat "$heartbeat" > "$work/sim.log" 2>&1 &
sim_pid=$!

# Wait until every siren has published its birth.
while [ "$(grep -c '/birth$' "$work/messages" || true)" -lt "$sirens" ]; do
  sleep 1
  kill -0 "$sim_pid" || { cat "$work/sim.log"; exit 1; }
done
connected=$(date +%s.%N)

ticks() { awk '{print $14 + $15}' "/proc/$sim_pid/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks); m0=$(wc -l < "$work/messages")
sleep "$measure"
t1=$(ticks); m1=$(wc -l < "$work/messages")
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$sim_pid/status")
hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$sim_pid/status")

echo "sirens:               $sirens"
echo "all connected after:  $(echo "$connected - $start" | bc) s"
echo "cpu over ${measure} s:      $(echo "scale=1; 100 * ($t1 - $t0) / $hz / $measure" | bc) % of one core"
echo "resident memory:      $((rss_kb / 1024)) MiB ($((rss_kb * 1024 / sirens)) bytes per siren), peak $((hwm_kb / 1024)) MiB"
echo "messages delivered:   $(echo "scale=1; ($m1 - $m0) / $measure" | bc) per second (heartbeat every ${heartbeat} s)"
