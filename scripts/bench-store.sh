#!/usr/bin/env bash
# Issue 10 target 7: bbolt write amplification and hub restart time.
#
#   1. BenchmarkWriteAmplification (hub/store): accepted records persisted as
#      the hub does (Store.Save of device record + evidence record, durable
#      before the ack) from 1 and 256 writers; bytes written per record from
#      /proc/self/io (wchar and write_bytes) and their ratio to the record.
#   2. BenchmarkRestart (hub/store): OpenBolt + Briefs (what the hub reads
#      before it accepts messages) on a store of STORE_DEVICES devices
#      (default 100,000) with 3 attestations each, warm and cold page cache.
#      The store is generated once through the store API and cached under
#      $TMPDIR/rat-storebench.
#   3. The real `rat-hub serve` on a copy of that store: time from exec until
#      it has written --addr-file (written after server.Start has subscribed
#      and the HTTP API listens, i.e. it accepts messages), RESTART_RUNS times
#      (default 3) warm and cold (the store file evicted from the page cache
#      with dd iflag=nocache, which drops only this file's pages).
# SKIP_GO_BENCH=1 runs only 3 (on the cached store).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${STORE_DEVICES:-100000}
RUNS=${RESTART_RUNS:-3}
CACHE=${TMPDIR:-/tmp}/rat-storebench
export RAT_STORE_DEVICES=$N
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r); $(uptime)"
if [ -z "${SKIP_GO_BENCH:-}" ]; then
echo "== write amplification"
go test -run '^$' -bench '^BenchmarkWriteAmplification$' -benchtime 3000x ./hub/store | grep -E '^Benchmark'
echo "== store restart, $N devices (OpenBolt + Briefs)"
go test -run '^$' -bench '^BenchmarkRestart$' -benchtime 3x -timeout 2h ./hub/store | grep -E '^Benchmark|store '
fi
db=$CACHE/fleet-v2-d$N-r3.db
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/rat-hub" ./cmd/rat-hub
# start_hub DIR: exec rat-hub serve on DIR, wait until it accepts messages,
# print the seconds it took and its CPU so far, stop it.
start_hub() {
  rm -f "$work/addr.json"
  local t0 t1 pid cpu
  t0=$(date +%s.%N)
  "$work/rat-hub" serve --data "$1" --http 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 --ek-tofu-unsafe \
    --addr-file "$work/addr.json" 2> "$work/hub.log" &
  pid=$!
  while [ ! -s "$work/addr.json" ]; do
    kill -0 $pid 2>/dev/null || { cat "$work/hub.log"; exit 1; }
    sleep 0.01
  done
  t1=$(date +%s.%N)
  cpu=$(awk '{print ($14+$15)/100}' /proc/$pid/stat)
  kill $pid; wait $pid 2>/dev/null || true
  printf '%.2f s to accepting messages (hub CPU %.2f s so far)' "$(echo "$t1 - $t0" | bc)" "$cpu"
}
# The cached store may predate this hub's store format (its briefs are then
# rebuilt once at open): upgrade a copy once, timed apart, and time the
# ordinary starts on copies of that.
rm -rf "$work/up"; mkdir -m 700 "$work/up"; cp "$db" "$work/up/hub.db"; sync "$work/up/hub.db"
echo "rat-hub serve first start on the cached store (one-time upgrade if it is older), warm: $(start_hub "$work/up")"
db=$work/up/hub.db
echo "== rat-hub serve on $db ($(du -h "$db" | cut -f1)), until it accepts messages"
for mode in warm cold; do
  for i in $(seq "$RUNS"); do
    rm -rf "$work/data"; mkdir -m 700 "$work/data"
    cp "$db" "$work/data/hub.db"
    sync "$work/data/hub.db" # its writeback would otherwise slow the start
    # A first start creates the hub key and token; time the second.
    if [ "$mode" = cold ]; then dd if="$work/data/hub.db" iflag=nocache count=0 status=none; fi
    echo "rat-hub serve $mode start $i: $(start_hub "$work/data")"
  done
done
echo "uptime: $(uptime)"
