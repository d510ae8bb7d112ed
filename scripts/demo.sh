#!/usr/bin/env bash
# make demo: what the tree can show today, narrated, artifacts under demo-out/.
#
# Today this runs the IMA + runtime-policy core on a real kernel's IMA log
# (Ubuntu 24.04, kernel 6.8, from Keylime's test data): replay PCR 10, make
# a Keylime runtime policy from the log, judge the log (TRUSTED), run a file
# that is not in the policy (UNTRUSTED, naming it and why), update the
# policy, judge again (TRUSTED). The agent/hub/MQTT loop of issue 4 is not
# built yet; see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=demo-out
RAT=bin/rat
rm -rf "$OUT"; mkdir -p "$OUT"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

LOG=testdata/ima/ubuntu2404-kernel68-ima-ng-sha256.ascii
cp "$LOG" "$OUT/ima-log.ascii"

say "1. Replay the real IMA log into PCR 10 (sha1 and sha256 banks)"
$RAT ima replay --bank sha1 "$OUT/ima-log.ascii" | tee "$OUT/pcr10-sha1.txt"
$RAT ima replay --bank sha256 "$OUT/ima-log.ascii" | tee "$OUT/pcr10-sha256.txt"

say "2. Baseline: make a Keylime runtime policy from the log"
$RAT policy create --ima-log "$OUT/ima-log.ascii" -o "$OUT/policy-v1.json"
echo "policy: $OUT/policy-v1.json ($(grep -o '"/' "$OUT/policy-v1.json" | wc -l) paths)"

say "3. Judge the log against the policy: expect TRUSTED"
$RAT policy check --policy "$OUT/policy-v1.json" --ima-log "$OUT/ima-log.ascii" && echo "verdict: TRUSTED"

say "4. A file not in the policy executes: /tmp/evil"
# An ima-ng entry exactly as the kernel logs it: template data is
# [u32le len]"sha256:"\0<digest> [u32le len]<path>\0, template hash = sha1(template data).
perl -e '
  use Digest::SHA qw(sha1_hex sha256);
  my $path = "/tmp/evil"; my $d = sha256("#!evil binary\n");
  my $dng = "sha256:\0" . $d; my $nng = $path . "\0";
  my $td = pack("V", length $dng) . $dng . pack("V", length $nng) . $nng;
  printf "10 %s ima-ng sha256:%s %s\n", sha1_hex($td), unpack("H*", $d), $path;
' > "$OUT/evil-entry.ascii"
cat "$OUT/ima-log.ascii" "$OUT/evil-entry.ascii" > "$OUT/ima-log-2.ascii"
cat "$OUT/evil-entry.ascii"
set +e
$RAT policy check --policy "$OUT/policy-v1.json" --ima-log "$OUT/ima-log-2.ascii" | tee "$OUT/verdict-2.txt"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 1 ]; then echo "demo: expected UNTRUSTED (exit 1), got exit $rc" >&2; exit 1; fi
grep -q '/tmp/evil' "$OUT/verdict-2.txt" || { echo "demo: verdict does not name /tmp/evil" >&2; exit 1; }
echo "verdict: UNTRUSTED"

say "5. Operator approves the new file: policy v2 from the new log"
$RAT policy create --ima-log "$OUT/ima-log-2.ascii" -o "$OUT/policy-v2.json"
$RAT policy check --policy "$OUT/policy-v2.json" --ima-log "$OUT/ima-log-2.ascii" && echo "verdict: TRUSTED"

say "done: artifacts in $OUT/"
ls -1 "$OUT"
