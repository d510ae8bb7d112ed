#!/usr/bin/env bash
# Agent footprint (part of make bench): the stripped static linux/arm64
# rat-agent's size, and RSS / CPU / uplink bytes of the real rat-agent
# (host build of the same code) on swtpm against a hub, over a run scaled
# down from the hour the target names: FOOTPRINT_SECONDS (default 60) with
# a heartbeat of FOOTPRINT_HEARTBEAT (default 1s, 10x the default rate), so
# the run makes as many heartbeats as 10x its length would at the default.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${FOOTPRINT_SECONDS:-60}
HB=${FOOTPRINT_HEARTBEAT:-1s}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

(cd device && CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -trimpath -ldflags='-s -w' -o "$work/rat-agent-arm64" ./cmd/rat-agent)
size=$(stat -c %s "$work/rat-agent-arm64")
echo "rat-agent linux/arm64 stripped static: $size bytes ($(awk -v s="$size" 'BEGIN{printf "%.2f", s/1e6}') MB, $(awk -v s="$size" 'BEGIN{printf "%.2f", s/1048576}') MiB)"

if ! command -v swtpm >/dev/null; then
  echo "swtpm not installed: RSS/CPU/uplink not measured"
  [ -z "${RAT_REQUIRE_INTEGRATION:-}" ] || exit 1
  exit 0
fi
(cd device && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$work/rat-agent" ./cmd/rat-agent)
go build -o "$work/rat-loadgen" ./cmd/rat-loadgen

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/tpm" "$work/hub" "$work/agent"
swtpm socket --tpm2 --tpmstate dir="$work/tpm" --server type=tcp,port="$port",bindaddr=127.0.0.1 \
  --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 --flags not-need-init,startup-clear &
pids+=($!)
mkfifo "$work/hub.in"
"$work/rat-loadgen" hub -dir "$work/hub" <"$work/hub.in" >"$work/hub.out" 2>"$work/hub.err" &
pids+=($!)
exec 9>"$work/hub.in"
for _ in $(seq 100); do grep -q '^BROKER ' "$work/hub.out" 2>/dev/null && break; sleep 0.1; done
broker=$(sed -n 's/^BROKER //p' "$work/hub.out")
: >"$work/ima.bin"
"$work/rat-agent" run --hub "$broker" --device-id footprint --group loadgen --tpm "tcp://127.0.0.1:$port" \
  --ima-file "$work/ima.bin" --event-log "$work/none" --state "$work/agent" --release-file "$work/none" \
  --heartbeat "$HB" --log-level warn 2>"$work/agent.err" &
apid=$!
pids+=($apid)
sleep 3 # enrollment
cpu() { awk '{print $14+$15}' "/proc/$apid/stat"; }
# bytes the agent's own socket to the broker has sent (the hub's socket to
# the same broker port is another process's)
sent() { ss -tinpH state established "dport = :${broker##*:}" 2>/dev/null |
  awk -v p="pid=$apid," 'f { if (match($0, /bytes_sent:[0-9]+/)) print substr($0, RSTART+11, RLENGTH-11); f=0 } index($0, p) { f=1 }' | head -1; }
c0=$(cpu); b0=$(sent); t0=$(date +%s.%N)
maxrss=0
for _ in $(seq "$SECS"); do
  sleep 1
  r=$(awk '/VmRSS/{print $2}' "/proc/$apid/status")
  [ "$r" -gt "$maxrss" ] && maxrss=$r
done
c1=$(cpu); b1=$(sent); t1=$(date +%s.%N)
hz=$(getconf CLK_TCK)
hb_s=$(echo "$HB" | sed 's/s$//')
awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$hz" -v rss="$maxrss" -v b0="${b0:-0}" -v b1="${b1:-0}" -v hb="$hb_s" 'BEGIN{
  el=t1-t0; n=el/hb;
  printf "rat-agent on swtpm, %.0f s at a %s s heartbeat (%.0f heartbeats):\n", el, hb, n;
  printf "  max RSS %.1f MB\n", rss/1024;
  printf "  CPU %.2f%% of one core over the run (%.2f ms per heartbeat, incl. the quote round trip to swtpm)\n", 100*(c1-c0)/hz/el, 1000*(c1-c0)/hz/n;
  printf "  at the default 10 s heartbeat: %.3f%% of one core\n", 100*(c1-c0)/hz/n/10;
  printf "  uplink %d bytes, %.0f bytes per heartbeat (TCP payload to the broker: MQTT PUBLISH of the record, PUBACKs, keepalive)\n", b1-b0, (b1-b0)/n }'
grep -v '^$' "$work/agent.err" | head -5 || true
