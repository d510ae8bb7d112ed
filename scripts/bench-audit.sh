#!/usr/bin/env bash
# Issue 10 target 6: offline audit of whole device-days, on one core.
#
# For each size in AUDIT_DAYS (device-days, default "1 10"), makes (once,
# cached under $TMPDIR/rat-auditbench) a bundle of REAL evidence: one device,
# a go-tpm-tools simulator quote every 10 s of device time (8,640 a day),
# 100,000 IMA entries a day logged and extended into PCR 10, a key-signed
# runtime policy per half day (audit/simbundle.WriteDays); then
#   1. BenchmarkVerifyDays (package audit, in process, -cpu 1), and
#   2. `rat-audit verify` of the same file under GOMAXPROCS=1, wall and CPU
#      time from /usr/bin/time, AUDIT_RUNS times (default 3),
# and prints bytes per quote. Every verify must say TRUSTED (exit 0).
# Generating costs ≈ 1.3 ms per simulator quote plus the extends: about a
# minute per device-day on the 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
DAYS=${AUDIT_DAYS:-"1 10"}
RUNS=${AUDIT_RUNS:-3}
CACHE=${RAT_AUDIT_CACHE:-${TMPDIR:-/tmp}/rat-auditbench}
export RAT_AUDIT_CACHE=$CACHE
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/rat-audit" ./cmd/rat-audit
go test -c -o "$bin/audit.test" ./audit

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r); $(uptime)"
for d in $DAYS; do
  echo "== $d device-day(s)"
  # Generates the bundle if it is not cached yet, then benchmarks in process.
  (cd audit && RAT_AUDIT_DAYS=$d "$bin/audit.test" -test.run '^$' -test.bench '^BenchmarkVerifyDays$' \
    -test.benchtime 1x -test.count "$RUNS" -test.cpu 1 -test.benchmem -test.timeout 6h | grep -E '^Benchmark')
  dir=$(ls -d "$CACHE"/v3-days"$d"-q*-evlog | head -1)
  grep -E '"(Quotes|Entries|Policies|Bytes|GenSeconds)"' "$dir/fixture.json" | tr -d ' ,' | paste -sd' '
  for i in $(seq "$RUNS"); do
    GOMAXPROCS=1 /usr/bin/time -f "rat-audit verify: wall %e s, user %U s, sys %S s, max RSS %M KB" \
      "$bin/rat-audit" verify "$dir/bundle.cbor" --ek-roots "$dir/ek-roots" --key "$dir/policy.pem" \
      --without-tlog-unsafe --hub-key "$dir/hub.pem" > "$bin/report.txt" 2> "$bin/time.txt" || {
        cat "$bin/report.txt" "$bin/time.txt"; echo "rat-audit verify did not say TRUSTED"; exit 1; }
    tail -1 "$bin/time.txt"
  done
  grep -m1 -i 'verdict' "$bin/report.txt" || true
  echo "uptime: $(uptime)"
done
