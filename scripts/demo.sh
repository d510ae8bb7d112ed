#!/usr/bin/env bash
# make demo: the whole flow on one machine, on embedded defaults, narrated;
# every artifact goes under demo-out/. Exits 0 only if every step happened.
#
#   hub (embedded MQTT broker, bbolt, HTTP API on free loopback ports)
#   a device: the real agent on a simulated TPM, with a simulated IMA that
#   measures real files and extends PCR 10 exactly as the kernel would
#   enroll (EK, AK, credential activation, baseline policy) -> TRUSTED
#   an unapproved binary runs -> UNTRUSTED naming it, revocation actions run
#   the operator approves it (policy v2 pushed to the group) -> TRUSTED
#   then the same IMA/policy core on a real kernel's log (Ubuntu 24.04).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=demo-out
BIN=bin
rm -rf "$OUT"; mkdir -p "$OUT/hub" "$OUT/device" "$OUT/rootfs"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: FAILED: $*" >&2; for f in "$OUT"/hub.log "$OUT"/device.log; do echo "--- $f" >&2; tail -20 "$f" >&2; done; exit 1; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
now_ms() { date +%s%3N; }
# wait_state ID STATE TIMEOUT_S: poll the hub until the device is in STATE.
wait_state() {
	local deadline=$(( $(now_ms) + $3 * 1000 ))
	while [ "$(now_ms)" -lt "$deadline" ]; do
		s=$($BIN/rat devices --json 2>/dev/null | json "next((x['state'] for x in d if x['id']=='$1'), '')" 2>/dev/null || true)
		[ "$s" = "$2" ] && return 0
		sleep 0.05
	done
	return 1
}

say "1. Start the hub: embedded MQTT broker, bbolt store, HTTP API (free loopback ports)"
cat > "$OUT/revoke-hook.sh" <<'HOOK'
#!/bin/sh
# revocation action: the hub runs this when a device turns UNTRUSTED
echo "$(date -u +%FT%TZ) revoke device=$RAT_DEVICE reason=$RAT_REASON" >> "$(dirname "$0")/revocations.log"
HOOK
chmod +x "$OUT/revoke-hook.sh"
# Runtime policies for group demo must be signed by the operator's key
# (key-only, offline: no transparency log in a demo without internet).
$BIN/rat policy keygen -o "$OUT/policy-key.pem" > /dev/null
python3 - "$OUT/policy-key.pub.pem" > "$OUT/signers.json" <<'PY'
import json, sys
print(json.dumps({"groups": {"demo": {"public_keys": [open(sys.argv[1]).read()], "key_only_without_tlog_unsafe": True}}}, indent=2))
PY
# The simulated TPM is "manufactured" with an EK certificate from a demo CA,
# so the hub verifies the EK chain (no trust on first use).
$BIN/rat-devsim --ek-ca "$OUT/ekca" --ek-ca-only
$BIN/rat-hub serve --data "$OUT/hub" --http 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 \
	--ek-roots "$OUT/ekca/roots" --signers "$OUT/signers.json" \
	--revoke-exec "$PWD/$OUT/revoke-hook.sh" --addr-file "$OUT/hub/addrs.json" > "$OUT/hub.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$OUT/hub/addrs.json" ] && break; sleep 0.05; done
[ -s "$OUT/hub/addrs.json" ] || die "hub did not start"
export RAT_HUB=$(json "d['http']" < "$OUT/hub/addrs.json")
export RAT_TOKEN_FILE=$OUT/hub/operator.token
MQTT=$(json "d['mqtt']" < "$OUT/hub/addrs.json")
echo "hub: API $RAT_HUB, MQTT $MQTT; EK roots: $OUT/ekca/roots (the demo TPM manufacturer)"
echo "policies for group demo must be signed by $OUT/policy-key.pub.pem ($OUT/signers.json)"

say "2. A device boots (real firmware event log, Secure Boot on) and enrolls: EK certificate, AK, credential activation, baseline policy"
for f in /bin/ls /bin/cat /bin/sh /usr/bin/env /usr/bin/sort; do
	[ -f "$f" ] && cp -L "$f" "$OUT/rootfs/"
done
: > "$OUT/device/exec-spool"
$BIN/rat-devsim --hub "$MQTT" --device-id edge-1 --group demo --state "$OUT/device" \
	--ek-ca "$OUT/ekca" --event-log evidence/eventlog/testdata/secureboot-on.bin \
	--measure "$OUT/rootfs" --exec-spool "$OUT/device/exec-spool" --baseline > "$OUT/device.log" 2>&1 &
PIDS+=($!)
wait_state edge-1 TRUSTED 20 || die "edge-1 never became TRUSTED"
$BIN/rat devices

say "2b. The operator adopts the baseline: the same policy, signed with the operator's key"
$BIN/rat init-baseline --group demo --device edge-1 -o "$OUT/policy-v1.json" > /dev/null  # the log as the hub verified it
$BIN/rat policy sign --key "$OUT/policy-key.pem" --policy "$OUT/policy-v1.json" -o "$OUT/policy-v1.json.sigstore.json" 2> /dev/null
$BIN/rat policy push --group demo --bundle "$OUT/policy-v1.json.sigstore.json" "$OUT/policy-v1.json" > "$OUT/policy-v1.push.json"
echo "policy v1 (signed) active for group demo; the hub's own Baseline::demo was never signed by anyone"

say "3. A file not in the policy executes on the device"
printf '#!/bin/sh\necho "not approved"\n' > "$OUT/rootfs/evil"
chmod +x "$OUT/rootfs/evil"
t0=$(now_ms)
echo "$PWD/$OUT/rootfs/evil" >> "$OUT/device/exec-spool"
wait_state edge-1 UNTRUSTED 10 || die "edge-1 did not turn UNTRUSTED"
t1=$(now_ms)
echo "hub marked edge-1 UNTRUSTED $((t1 - t0)) ms after the file ran (simulated IMA poll 100 ms + agent poll 250 ms + verify)"
$BIN/rat device show edge-1 | tee "$OUT/device-untrusted.txt"
grep -q "rootfs/evil" "$OUT/device-untrusted.txt" || die "the verdict does not name the file"
grep -q "ima.validation.ima-ng.not_in_allowlist" "$OUT/device-untrusted.txt" || die "no Keylime failure id"
for _ in $(seq 100); do [ -s "$OUT/revocations.log" ] && break; sleep 0.05; done
[ -s "$OUT/revocations.log" ] || die "the revocation hook did not run"
echo "revocation action ran:"; cat "$OUT/revocations.log"

say "4. The operator approves the file: policy v2 from the device's own log, pushed to group demo"
$BIN/rat policy create --ima-log "$OUT/device/binary_runtime_measurements" -o "$OUT/policy-v2.json"
if $BIN/rat policy push --group demo "$OUT/policy-v2.json" > /dev/null 2> "$OUT/policy-v2.unsigned.txt"; then
	die "the hub accepted an unsigned policy"
fi
echo "unsigned push refused: $(cat "$OUT/policy-v2.unsigned.txt")"
$BIN/rat policy sign --key "$OUT/policy-key.pem" --policy "$OUT/policy-v2.json" -o "$OUT/policy-v2.json.sigstore.json" 2> /dev/null
$BIN/rat policy push --group demo --bundle "$OUT/policy-v2.json.sigstore.json" "$OUT/policy-v2.json" > "$OUT/policy-v2.push.json"
echo "signed push accepted (Sigstore bundle $OUT/policy-v2.json.sigstore.json)"
wait_state edge-1 TRUSTED 10 || die "edge-1 did not return to TRUSTED"
$BIN/rat devices

say "4b. An auditor replays the device's evidence offline, trusting none of our code's verdicts"
$BIN/rat-hub export --device edge-1 -o "$OUT/bundle.cbor"
set +e
$BIN/rat-audit verify --ek-roots "$OUT/ekca/roots" --hub-key "$OUT/hub/hub-key.pub.pem" --key "$OUT/policy-key.pub.pem" --without-tlog-unsafe \
	"$OUT/bundle.cbor" > "$OUT/audit.txt"
rc=$?
set -e
sed -n '1,/^proven:/p' "$OUT/audit.txt" | head -20
[ "$rc" -eq 1 ] || die "rat-audit exit $rc, want 1 (the span contains the unapproved execution)"
grep -q "rootfs/evil" "$OUT/audit.txt" || die "the audit does not name the file"
grep -q "Baseline::demo" "$OUT/audit.txt" || die "the audit does not flag the unsigned baseline policy"
echo "rat-audit: UNTRUSTED for the span: rootfs/evil ran before policy v2 approved it, and the first record was judged"
echo "only by the hub's unsigned Baseline::demo (full report: $OUT/audit.txt)"

say "5. The IMA + policy core on a real kernel's log (Ubuntu 24.04, kernel 6.8, from Keylime's test data)"
LOG=testdata/ima/ubuntu2404-kernel68-ima-ng-sha256.ascii
echo "PCR 10 (sha256) replayed from $(wc -l < "$LOG") entries: $($BIN/rat ima replay --bank sha256 "$LOG" | tail -1)"
$BIN/rat policy create --ima-log "$LOG" -o "$OUT/ubuntu-policy.json"
$BIN/rat policy check --policy "$OUT/ubuntu-policy.json" --ima-log "$LOG" > /dev/null && echo "real log vs its baseline: TRUSTED"

say "6. Only attested machines get secrets: the hub's EAR tokens and a relying party (examples/secret-release)"
${GO:-go} build -o "$BIN/secret-release" ./examples/secret-release
printf 'db-password-for-attested-machines-only' > "$OUT/secret.txt"
# Demo-only option: the caller names its device in a header (deployed: mTLS). Only affirming
# tokens release the secret: EK chain, AK binding, IMA vs policy and Secure Boot all verified.
$BIN/secret-release -device-header-unsafe -listen 127.0.0.1:0 \
	-addr-file "$OUT/secret-release.addr" -hub "$RAT_HUB" -secret-file "$OUT/secret.txt" > "$OUT/secret-release.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$OUT/secret-release.addr" ] && break; sleep 0.05; done
[ -s "$OUT/secret-release.addr" ] || die "secret-release did not start"
SVC=$(cat "$OUT/secret-release.addr")
echo "relying party $SVC checks the hub's tokens against $RAT_HUB/.well-known/jwks.json and /v1/tokens/{id}/status"
client() { $BIN/secret-release -client -service "$SVC" -hub "$RAT_HUB" -device edge-1 -hub-credential-file "$RAT_TOKEN_FILE" "$@"; }
client | tee "$OUT/secret-trusted.txt" || die "TRUSTED edge-1 did not get the secret"
client -token-out "$OUT/edge-1.token" > /dev/null || die "no token for edge-1"
printf '#!/bin/sh\necho "mining"\n' > "$OUT/rootfs/miner"
chmod +x "$OUT/rootfs/miner"
echo "$PWD/$OUT/rootfs/miner" >> "$OUT/device/exec-spool"
wait_state edge-1 UNTRUSTED 10 || die "edge-1 did not turn UNTRUSTED"
echo "edge-1 ran rootfs/miner (not in the policy): UNTRUSTED, the hub revoked its tokens"
set +e
client -token-in "$OUT/edge-1.token" | tee "$OUT/secret-revoked.txt"; rc1=${PIPESTATUS[0]}
client | tee "$OUT/secret-untrusted.txt"; rc2=${PIPESTATUS[0]}
set -e
[ "$rc1" -eq 3 ] && [ "$rc2" -eq 3 ] || die "UNTRUSTED edge-1 was not refused (exit $rc1, $rc2)"
grep -q revoked "$OUT/secret-revoked.txt" || die "the token issued before was not refused as revoked"

say "done: every step happened; artifacts in $OUT/"
ls -1 "$OUT"
