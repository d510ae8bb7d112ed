#!/usr/bin/env bash
# make bench: every Benchmark of the three modules, then the end-to-end
# runs of issue 10 (hub under rat-loadgen load with the embedded broker and
# with Mosquitto, detection latency over 1000 trials, agent footprint).
# Results go into docs/benchmarks.md by hand with these command lines, the
# machine and the date. Nothing here is a pass/fail gate.
#
#   BENCHTIME        go test -benchtime for the micro-benchmarks (1s)
#   LOADGEN_DEVICES  simulated devices per load run (500)
#   LOADGEN_RECORDS  records per device (40; at most 64, the nonce window)
#   DETECT_TRIALS    detection latency trials (1000)
#   AUDIT_DAYS       device-day sizes of the offline audit run ("1 10")
#   STORE_DEVICES    fleet size of the hub restart run (100000)
#   SKIP_E2E=1       micro-benchmarks only
set -euo pipefail
cd "$(dirname "$0")/.."
BENCHTIME=${BENCHTIME:-1s}
DEVICES=${LOADGEN_DEVICES:-500}
RECORDS=${LOADGEN_RECORDS:-40}
TRIALS=${DETECT_TRIALS:-1000}

echo "== micro-benchmarks (go test -bench, -benchtime=$BENCHTIME)"
for m in evidence device .; do
  (cd "$m" && go test -run='^$' -bench=. -skip='^(BenchmarkDetection|BenchmarkVerifyDays|BenchmarkRestart|BenchmarkWriteAmplification)$' -benchmem -benchtime="$BENCHTIME" ./... 2>&1 | grep -vE '^(\?|ok|PASS)\b' || true)
done
[ -z "${SKIP_E2E:-}" ] || exit 0

echo "== detection latency: $TRIALS trials, default agent settings"
go test -run='^$' -bench='^BenchmarkDetection$' -benchtime="${TRIALS}x" -timeout 60m ./hub/server | grep -E '^Benchmark'

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/rat-loadgen" ./cmd/rat-loadgen
quiet() { grep -v 'component=broker' >&2 || true; }
echo "== hub end to end: embedded broker, closed loop"
"$bin/rat-loadgen" -devices "$DEVICES" -records "$RECORDS" -broker embedded 2> >(quiet) || true
echo "== hub end to end: Mosquitto, closed loop"
"$bin/rat-loadgen" -devices "$DEVICES" -records "$RECORDS" -broker mosquitto 2> >(quiet) || true
if [ "$(nproc)" -ge 2 ]; then
  # The hub's rate per dedicated core: hub on the last CPU, generator on the others.
  last=$(( $(nproc) - 1 ))
  echo "== hub end to end, hub pinned to CPU $last: embedded broker, closed loop"
  "$bin/rat-loadgen" -devices "$DEVICES" -records "$RECORDS" -broker embedded -hub-cpus "$last" 2> >(quiet) || true
  echo "== hub end to end, hub and Mosquitto pinned to CPU $last: Mosquitto, closed loop"
  "$bin/rat-loadgen" -devices "$DEVICES" -records "$RECORDS" -broker mosquitto -hub-cpus "$last" 2> >(quiet) || true
fi
echo "== hub end to end: embedded broker, open loop at 300 records/s (latency below saturation)"
"$bin/rat-loadgen" -devices 200 -records "$RECORDS" -rate 300 -broker embedded 2> >(quiet) || true

echo "== agent footprint"
./scripts/bench-footprint.sh

echo "== offline audit of device-days (issue 10 target 6)"
./scripts/bench-audit.sh

echo "== storage: write amplification and hub restart (issue 10 target 7)"
./scripts/bench-store.sh
