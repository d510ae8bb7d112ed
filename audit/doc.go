// Package audit is the offline auditor: it replays one evidence bundle
// (evidence/bundle) and says what it proves, what it had to trust, and a
// verdict (TRUSTED, UNTRUSTED or INCONCLUSIVE), without trusting the
// operator or the hub that exported it.
//
// It checks every quote's signature and the binding of its claims set
// (qualifying data = SHA-256 of the claims), the hash chain and TPM clock
// (gaps, reorders, duplicates, reboots), replays the IMA log into PCR 10,
// judges every IMA entry against the runtime policy in force at that
// time, verifies each policy's Sigstore bundle and signer (audit/policysig),
// the EK certificate chain and the hub's signed AK binding. A check that
// could not be made is reported as not checked and makes the verdict
// INCONCLUSIVE: nothing is passed by default.
//
// It must never import hub/ (an auditor runs it without our service);
// the evidence module supplies the formats and pure checks.
package audit
