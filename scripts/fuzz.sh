#!/usr/bin/env bash
# Runs every Fuzz target of the three modules for FUZZTIME each.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}
fail=0
for mod in evidence device .; do
  while IFS= read -r f; do
    dir=$(dirname "$f")
    for t in $(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)\(' "$f" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
      pkg="./${dir#$mod/}"
      [ "$mod" = "." ] && pkg="./${dir#./}"
      echo "== fuzz $mod $pkg $t ($FUZZTIME)"
      # Go's fuzzer sometimes ends a run with a bare "context deadline
      # exceeded" when the time runs out mid-minimisation (no failing input
      # is written): run such a target once more; any real finding fails.
      # -fuzzminimizetime 1s: minimising each new interesting input (60 s by
      # default) would take a short run's whole budget on a large seed (a
      # bundle of compact records), leaving no time to fuzz.
      for try in 1 2; do
        if out=$(cd "$mod" && go test -run='^$' -fuzz="^${t}\$" -fuzztime="$FUZZTIME" -fuzzminimizetime=1s "$pkg" 2>&1); then echo "$out" | tail -2; break; fi
        echo "$out" | tail -20
        if [ "$try" = 1 ] && echo "$out" | grep -q 'context deadline exceeded' && ! echo "$out" | grep -q 'Failing input written'; then
          echo "== $t: deadline flake without a failing input; running once more"; continue
        fi
        fail=1; break
      done
    done
  done < <(if [ "$mod" = "." ]; then find . -path ./evidence -prune -o -path ./device -prune -o -name '*_test.go' -print; else find "$mod" -name '*_test.go'; fi | xargs grep -l '^func Fuzz' 2>/dev/null | sort)
done
exit $fail
