#!/usr/bin/env bash
# make bench: every Benchmark of the three modules; results go into
# docs/benchmarks.md by hand with this command line, machine and date.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCHTIME=${BENCHTIME:-1s}
for m in evidence device .; do
  (cd "$m" && go test -run='^$' -bench=. -benchmem -benchtime="$BENCHTIME" ./... 2>&1 | grep -vE '^(\?|ok|PASS)\b' || true)
done
