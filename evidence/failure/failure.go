package failure

import (
	"fmt"
	"strings"
)

// Severity orders failures. Keylime uses a list of severity labels; we keep
// the two that decide a verdict plus an informational level.
type Severity int

const (
	// Info events are recorded but do not change a verdict.
	Info Severity = iota
	// Warning events are recorded and shown to operators; they do not
	// change a verdict on their own.
	Warning
	// Critical events make the device UNTRUSTED.
	Critical
)

func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warning:
		return "warning"
	case Critical:
		return "critical"
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// Event is one attestation failure. ID follows Keylime's dotted ids where
// Keylime has one; Context says which thing failed (a path, a PCR, a
// sequence number) in words an operator or auditor can act on.
type Event struct {
	ID       string            `json:"id" cbor:"1,keyasint"`
	Severity Severity          `json:"severity" cbor:"2,keyasint"`
	Context  string            `json:"context,omitempty" cbor:"3,keyasint,omitempty"`
	Fields   map[string]string `json:"fields,omitempty" cbor:"4,keyasint,omitempty"`
}

func (e Event) String() string {
	var b strings.Builder
	b.WriteString(e.ID)
	if e.Context != "" {
		b.WriteString(": ")
		b.WriteString(e.Context)
	}
	return b.String()
}

// Error lets an Event travel as an error. Use errors.As to get it back.
type Error struct{ Event Event }

func (e *Error) Error() string { return e.Event.String() }

// New returns a critical event as an error.
func New(id, format string, args ...any) *Error {
	return &Error{Event: Event{ID: id, Severity: Critical, Context: fmt.Sprintf(format, args...)}}
}

// Well-known ids. Keylime's ids are used verbatim where Keylime defines
// one; ids Keylime lacks use the same dotted style under a component prefix
// of ours and are documented in docs/failures.md.
const (
	// IMA (Keylime: keylime/ima/ima.py, keylime/ima/ast.py).
	IMANotInAllowlist    = "ima.validation.ima-ng.not_in_allowlist"
	IMAInvalidHash       = "ima.validation.ima-ng.invalid_hash" // Keylime-style id for "path known, digest not allowed"
	IMAParsingError      = "ima.parser.invalid_entry"
	IMAPCRMismatch       = "ima.pcr_mismatch"
	IMABootAggregate     = "ima.validation.boot_aggregate.invalid"
	IMAExcluded          = "ima.validation.excluded"
	IMAIgnoredKeyring    = "ima.validation.ima-buf.ignored_keyring"
	IMASigInvalid        = "ima.validation.ima-sig.invalid_signature"
	IMASigNotInAllowlist = "ima.validation.ima-sig.not_in_allowlist"
	IMABufNotInAllowlist = "ima.validation.ima-buf.not_in_allowlist"
	IMAViolation         = "ima.validation.violation"
	IMALogTruncated      = "ima.log.truncated"
	// IMACountClaim (ours; a warning): the claims' IMA count is not the
	// number of entries the quoted PCR 10 covers. The kernel logs an entry
	// before it extends PCR 10 and keeps measuring while the agent quotes,
	// so after retries an agent may send the prefix the quote covers with
	// the count it read; the replay, the TPM's word, decides.
	IMACountClaim        = "ima.claims.count_mismatch"
	RuntimePolicyInvalid = "ima.policy.invalid"
	RuntimePolicyMissing = "ima.policy.missing"
	// IMARuntimePolicyHash is Keylime's id for "path listed, digest not allowed".
	IMARuntimePolicyHash = "ima.validation.ima-ng.runtime_policy_hash"

	// TPM quote (Keylime: keylime/tpm/tpm_main.py uses "quote_validation.*").
	QuoteInvalidScheme    = "tpm.quote.invalid_signature_scheme"
	QuoteInvalidSignature = "tpm.quote.invalid_signature"
	QuoteNotGenerated     = "tpm.quote.invalid_magic"
	QuoteWrongType        = "tpm.quote.invalid_type"
	QuoteNonceMismatch    = "tpm.quote.nonce_mismatch"
	QuotePCRSelection     = "tpm.quote.pcr_selection"
	QuotePCRDigest        = "tpm.quote.pcr_digest_mismatch"
	QuoteClockBackwards   = "tpm.quote.clock_backwards"
	QuoteMalformed        = "tpm.quote.malformed"
	QuoteReboot           = "tpm.quote.reboot" // warning: a reboot was seen

	// Identity.
	EKCertInvalid        = "tpm.ek.invalid_certificate"
	CredentialActivation = "tpm.ak.activation_failed"

	// Measured boot (Keylime: "measured_boot.*").
	MeasuredBootInvalidLog = "measured_boot.invalid_event_log"
	MeasuredBootPolicy     = "measured_boot.policy_mismatch"
	// MeasuredBootInvalidPCR: a quoted PCR differs from the event log's
	// replay (Keylime reports "invalid_pcr_N"; the PCR is in Fields["pcr"]).
	MeasuredBootInvalidPCR = "measured_boot.invalid_pcr"
	// MeasuredBootEventData: an event whose digest must be the hash of its
	// data (Secure Boot variable, separator, action) is not.
	MeasuredBootEventData = "measured_boot.event_data_mismatch"
	// MeasuredBootPCRNotQuoted: the log measures into a PCR the quote
	// leaves out, so those events are not backed by the TPM.
	MeasuredBootPCRNotQuoted = "measured_boot.pcr_not_quoted"

	// Evidence stream.
	EvidenceSeqGap      = "evidence.seq_gap"
	EvidenceReplay      = "evidence.replay"
	EvidenceStaleNonce  = "evidence.stale_nonce"
	EvidenceMalformed   = "evidence.malformed"
	EvidenceChainBroken = "evidence.chain_broken"
	EvidenceOversize    = "evidence.oversize"

	// Policy signature.
	PolicySignature = "policy.signature.invalid"
	PolicyIdentity  = "policy.signature.identity_not_allowed"

	// OTA.
	OTAUnknownRelease = "ota.release.unknown"
	OTARolloutWindow  = "ota.release.outside_window"
	// OTAReleaseNotApproved: the device runs a release the hub has but
	// nobody approved (no verified policy signature).
	OTAReleaseNotApproved = "ota.release.not_approved"
	// OTAReleaseRetired: the device runs a release that was retired.
	OTAReleaseRetired = "ota.release.retired"
)
