# Shared by the load harnesses (sourced, not run): builds the release binaries, generates an
# MQTT-only fleet of $sirens into a temporary $work directory pointed at a private Mosquitto
# on $broker_port and sirend's HTTP on $http_port, and kills everything started (pids+=...)
# on exit. Call start_broker, then start_daemon (sets $daemon), once the configuration is final.
# With STORE_URL=postgres://... the daemon's store is that PostgreSQL database (emptied first)
# instead of a SQLite file.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release -q -p sirend -p siren-sim
ulimit -n "$(ulimit -Hn)"
target/release/siren-sim fleet generate --sirens "$sirens" --seed 1 --serial-share 0 --out "$work" >/dev/null
sed -i "s/^embedded = true/embedded = false\nurl = \"mqtt:\/\/127.0.0.1:$broker_port\"/; s/127.0.0.1:9750/127.0.0.1:$http_port/" "$work/sirend.toml"
if [ -n "${STORE_URL:-}" ]; then
  psql -q "$STORE_URL" -c 'DROP SCHEMA public CASCADE; CREATE SCHEMA public;' >/dev/null
  sed -i "s|^path = \"sirend.db\"|url = \"$STORE_URL\"|" "$work/sirend.toml"
  printf '\n[leadership]\nname = "bench"\ndaemons = 1\n' >> "$work/sirend.toml"
fi
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\nmax_queued_messages 100000\n' "$broker_port" > "$work/mosquitto.conf"

start_broker() {
  mosquitto -c "$work/mosquitto.conf" >/dev/null 2>&1 & pids+=($!)
  sleep 1
}

start_daemon() {
  env RUST_LOG=warn ${DAEMON_ENV:-} target/release/sirend run --config "$work/sirend.toml" > "$work/sirend.log" 2>&1 & daemon=$!; pids+=($daemon)
  sleep 2
}

# Waits until every one of the $sirens sirens is ok, as sirend's metrics on $http_port say
# (at most 300 s), and says how long it took.
wait_all_ok() {
  local start
  start=$(date +%s)
  until [ "$(curl -s "http://127.0.0.1:$http_port/metrics" | awk '$1 == "siren_zone_sirens{zone=\"hangzhou\",state=\"ok\"}" {print $2}')" = "$sirens" ]; do
    sleep 1
    if (( $(date +%s) - start > 300 )); then echo "not every siren became ok"; tail -5 "$work/sirend.log" "$work/sim.log"; exit 1; fi
  done
  echo "all $sirens sirens ok after $(( $(date +%s) - start )) s"
}
