package audit

import (
	"fmt"
	"io"
	"strings"

	"github.com/ratatouille/rat/evidence/failure"
)

// Verdict is the auditor's conclusion about the span.
type Verdict string

const (
	// Trusted: every check passed (or was waived by the auditor, which
	// the trusted list says).
	Trusted Verdict = "TRUSTED"
	// Untrusted: some check failed.
	Untrusted Verdict = "UNTRUSTED"
	// Inconclusive: nothing failed, but something could not be checked.
	Inconclusive Verdict = "INCONCLUSIVE"
)

// Result of one check.
type Result string

const (
	Pass       Result = "pass"
	Fail       Result = "fail"
	NotChecked Result = "not checked"
	Waived     Result = "waived"
	// Info results carry facts that neither pass nor fail (the hub's own
	// verdicts, an absent optional signature).
	Info Result = "info"
)

// Check names, in report order.
const (
	CheckUEID            = "device-ueid"
	CheckEKCert          = "ek-certificate"
	CheckAKBinding       = "ak-binding"
	CheckAKAttributes    = "ak-attributes"
	CheckQuotes          = "quote-signatures"
	CheckClaims          = "claims-binding"
	CheckChain           = "chain-continuity"
	CheckIMAReplay       = "ima-replay"
	CheckEventLog        = "event-log-replay"
	CheckIMAPolicy       = "ima-policy"
	CheckPolicySignature = "policy-signatures"
	CheckBundleSignature = "bundle-signature"
	CheckHubVerdicts     = "hub-verdicts"
)

var checkOrder = []string{CheckUEID, CheckEKCert, CheckAKBinding, CheckAKAttributes, CheckQuotes, CheckClaims, CheckChain,
	CheckIMAReplay, CheckEventLog, CheckIMAPolicy, CheckPolicySignature, CheckBundleSignature, CheckHubVerdicts}

// Check is one verified property.
type Check struct {
	Name   string `json:"name"`
	Result Result `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// Failure is one failure event with where it was found: the record's
// sequence number, the element index and byte offset in the bundle, and
// the device-reported time.
type Failure struct {
	failure.Event
	Seq     uint64 `json:"seq,omitempty"`
	Element int    `json:"element"`
	Offset  int64  `json:"offset"`
	Time    int64  `json:"time,omitempty"`
}

func (f Failure) String() string {
	s := f.Event.String()
	if p := f.Fields["path"]; p != "" && !strings.Contains(s, p) {
		s += " (" + p + ")"
	}
	return fmt.Sprintf("%s [seq %d, element %d, byte %d, device time %s]", s, f.Seq, f.Element, f.Offset, unix(f.Time))
}

// Segment is a stretch of the chain with no gap: every quote links to the
// one before it and no record is missing.
type Segment struct {
	FromSeq  uint64 `json:"from_seq"`
	ToSeq    uint64 `json:"to_seq"`
	FromTime int64  `json:"from_time"`
	ToTime   int64  `json:"to_time"`
	Quotes   int    `json:"quotes"`
	// EndsBecause says why the segment ended (empty for the last).
	EndsBecause string `json:"ends_because,omitempty"`
}

// Reboot is a TPM reset seen between two quotes.
type Reboot struct {
	Seq        uint64 `json:"seq"`
	Time       int64  `json:"time"`
	ResetCount uint32 `json:"reset_count"`
	BootID     string `json:"boot_id,omitempty"`
}

// PolicyInfo describes one policy element.
type PolicyInfo struct {
	Name    string `json:"name"`
	Since   int64  `json:"since,omitempty"`
	Digest  string `json:"digest"`
	Signer  string `json:"signer,omitempty"`
	Signed  bool   `json:"signed"`
	Records int    `json:"records"`
}

// Report is the auditor's result.
type Report struct {
	Verdict Verdict `json:"verdict"`
	Device  struct {
		UEID    string `json:"ueid"`
		Subject string `json:"subject,omitempty"`
		Issuer  string `json:"issuer,omitempty"`
		EKCert  string `json:"ek_cert,omitempty"`
		AK      string `json:"ak"`
	} `json:"device"`
	SelfIssued bool         `json:"self_issued,omitempty"`
	Records    int          `json:"records"`
	Quotes     int          `json:"quotes"`
	IMAEntries int          `json:"ima_entries"`
	Segments   []Segment    `json:"segments"`
	Reboots    []Reboot     `json:"reboots,omitempty"`
	Policies   []PolicyInfo `json:"policies,omitempty"`
	Checks     []Check      `json:"checks"`
	Proven     []string     `json:"proven"`
	Trusted    []string     `json:"trusted"`
	NotProven  []string     `json:"not_proven,omitempty"`
	Failures   []Failure    `json:"failures,omitempty"`
	// FailuresOmitted counts failures beyond MaxFailures.
	FailuresOmitted int `json:"failures_omitted,omitempty"`
}

// Continuous reports whether the whole span is one gap-free segment.
func (r *Report) Continuous() bool { return len(r.Segments) == 1 }

// Check returns the named check.
func (r *Report) Check(name string) (Check, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// WriteText prints the report for a person: verdict, checks, proven and
// trusted lists, failures.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "verdict: %s\n", r.Verdict)
	fmt.Fprintf(w, "device: ueid %s", r.Device.UEID)
	if r.Device.Subject != "" {
		fmt.Fprintf(w, " (%s)", r.Device.Subject)
	}
	fmt.Fprintf(w, "\nrecords: %d, quotes: %d, IMA entries: %d, reboots: %d\n", r.Records, r.Quotes, r.IMAEntries, len(r.Reboots))
	fmt.Fprintln(w, "checks:")
	for _, c := range r.Checks {
		fmt.Fprintf(w, "  %-20s %-12s %s\n", c.Name, c.Result, c.Detail)
	}
	fmt.Fprintln(w, "proven:")
	for _, s := range r.Proven {
		fmt.Fprintf(w, "  - %s\n", s)
	}
	fmt.Fprintln(w, "trusted:")
	for _, s := range r.Trusted {
		fmt.Fprintf(w, "  - %s\n", s)
	}
	if len(r.NotProven) > 0 {
		fmt.Fprintln(w, "not proven:")
		for _, s := range r.NotProven {
			fmt.Fprintf(w, "  - %s\n", s)
		}
	}
	if len(r.Failures) > 0 {
		fmt.Fprintln(w, "failures:")
		for _, f := range r.Failures {
			fmt.Fprintf(w, "  - %s\n", f)
		}
		if r.FailuresOmitted > 0 {
			fmt.Fprintf(w, "  ... and %d more\n", r.FailuresOmitted)
		}
	}
}
