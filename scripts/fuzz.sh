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
      if ! (cd "$mod" && go test -run='^$' -fuzz="^${t}\$" -fuzztime="$FUZZTIME" "$pkg"); then fail=1; fi
    done
  done < <(if [ "$mod" = "." ]; then find . -path ./evidence -prune -o -path ./device -prune -o -name '*_test.go' -print; else find "$mod" -name '*_test.go'; fi | xargs grep -l '^func Fuzz' 2>/dev/null | sort)
done
exit $fail
