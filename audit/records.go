package audit

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ratatouille/rat/evidence/bundle"
	"github.com/ratatouille/rat/evidence/claims"
	"github.com/ratatouille/rat/evidence/eventlog"
	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/quote"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
)

// policyElement verifies a policy's signature and, only if that did not
// fail, parses it as the policy in force for the records that follow.
func (a *auditor) policyElement(p *bundle.Policy) {
	a.seenPolicy = true
	d := sha256.Sum256(p.Document)
	info := PolicyInfo{Name: p.Name, Since: p.Since, Digest: "sha256:" + hex.EncodeToString(d[:]), Signed: len(p.SigstoreBundle) > 0}
	a.policy, a.policyOK = nil, false
	res := checkPolicySignature(&a.o, p)
	switch res.result {
	case Pass:
		a.pass(CheckPolicySignature)
		info.Signer = res.signer
		a.rep.Proven = append(a.rep.Proven, fmt.Sprintf("runtime policy %q (%s) was signed by %s", p.Name, info.Digest, res.detail))
	case Fail:
		a.failed(CheckPolicySignature, "policy %q: %s", p.Name, res.detail)
		a.addFailure(failure.Event{ID: res.id, Severity: failure.Critical, Context: fmt.Sprintf("policy %q: %s", p.Name, res.detail), Fields: map[string]string{"policy": p.Name, "digest": info.Digest}})
	default:
		a.unchecked(CheckPolicySignature, "policy %q: %s", p.Name, res.detail)
	}
	a.policyFrom, a.policyChecked = p.FromSeq, false
	a.rep.Policies = append(a.rep.Policies, info)
	a.policyIdx = len(a.rep.Policies) - 1
	if res.result == Fail {
		return
	}
	pol, err := runtimepolicy.Parse(p.Document)
	if err != nil {
		a.failed(CheckIMAPolicy, "policy %q does not parse: %v", p.Name, err)
		a.addFailure(failure.Event{ID: failure.RuntimePolicyInvalid, Severity: failure.Critical, Context: fmt.Sprintf("policy %q: %v", p.Name, err)})
		return
	}
	a.policy, a.policyOK = pol, true
}

// record processes one evidence record in bundle order.
func (a *auditor) record(r *protocol.Evidence) {
	a.rep.Records++
	// Sequence: strictly increasing, each gap exactly the records the
	// outbox says it thinned. A duplicate or an earlier number is a replay
	// or reorder.
	if a.haveRecord {
		switch {
		case r.Seq <= a.lastSeq:
			a.failed(CheckChain, "record %d after record %d: duplicate or out of order", r.Seq, a.lastSeq)
			a.addFailure(failure.Event{ID: failure.EvidenceReplay, Severity: failure.Critical, Context: fmt.Sprintf("record %d follows record %d (duplicate or reordered)", r.Seq, a.lastSeq)})
			return
		case r.Seq != a.lastSeq+1+r.Thinned:
			a.failed(CheckChain, "records %d..%d missing (thinned: %d)", a.lastSeq+1, r.Seq-1, r.Thinned)
			a.addFailure(failure.Event{ID: failure.EvidenceSeqGap, Severity: failure.Critical, Context: fmt.Sprintf("records %d..%d are missing and not accounted for as thinned", a.lastSeq+1, r.Seq-1)})
			a.breakSegment(fmt.Sprintf("records %d..%d missing", a.lastSeq+1, r.Seq-1))
		case r.Thinned > 0:
			a.breakSegment(fmt.Sprintf("%d heartbeat records thinned by the device before seq %d", r.Thinned, r.Seq))
		}
	}
	a.haveRecord, a.lastSeq = true, r.Seq
	if a.seenPolicy && !a.policyChecked {
		// A policy placed before records it says it does not cover would
		// judge them by a policy not yet in force.
		a.policyChecked = true
		if a.policyFrom > r.Seq {
			name := a.rep.Policies[len(a.rep.Policies)-1].Name
			a.failed(CheckIMAPolicy, "policy %q says it applies from record %d but is placed before record %d", name, a.policyFrom, r.Seq)
			a.addFailure(failure.Event{ID: failure.RuntimePolicyInvalid, Severity: failure.Critical, Context: fmt.Sprintf("policy %q applies from record %d, placed before record %d", name, a.policyFrom, r.Seq)})
		}
	}
	if len(r.EventLog) > 0 {
		a.eventLogs++
		a.eventLog, a.eventLogSeq = r.EventLog, r.Seq
	}

	entries, err := ima.ParseBinary(bytes.NewReader(r.IMA))
	if err != nil {
		a.failed(CheckIMAReplay, "record %d: IMA entries do not parse: %v", r.Seq, err)
		a.addFailure(failure.Event{ID: failure.IMAParsingError, Severity: failure.Critical, Context: fmt.Sprintf("record %d: %v", r.Seq, err)})
		entries = nil
		a.replayer = nil // the log of this boot can no longer be followed
	}
	a.rep.IMAEntries += len(entries)
	if len(entries) > 0 || !r.Quoted() {
		expect := a.pendStart + uint64(len(a.pending))
		switch {
		case len(a.pending) == 0 && len(entries) > 0:
			a.pendStart = r.IMAStart
			a.pendingNew = a.haveLog && r.IMAStart == 0
			if a.replayer != nil && !a.pendingNew && r.IMAStart != a.base+uint64(a.replayer.Count()) {
				a.failed(CheckIMAReplay, "record %d starts at IMA entry %d, the previous quote covered %d", r.Seq, r.IMAStart, a.base+uint64(a.replayer.Count()))
				a.addFailure(failure.Event{ID: failure.IMALogTruncated, Severity: failure.Critical, Context: fmt.Sprintf("record %d: IMA entries %d..%d missing", r.Seq, a.base+uint64(a.replayer.Count()), r.IMAStart)})
				a.replayer = nil
			}
		case len(entries) > 0 && r.IMAStart != expect:
			a.failed(CheckIMAReplay, "record %d starts at IMA entry %d, want %d", r.Seq, r.IMAStart, expect)
			a.addFailure(failure.Event{ID: failure.IMALogTruncated, Severity: failure.Critical, Context: fmt.Sprintf("record %d: IMA chunk starts at entry %d, want %d", r.Seq, r.IMAStart, expect)})
			a.replayer = nil
		}
		a.pending = append(a.pending, entries...)
	}
	if !r.Quoted() {
		return
	}
	a.quoted(r)
}

// bootAggregatePath is the path of IMA's first entry of a boot.
const bootAggregatePath = "boot_aggregate"

func (a *auditor) breakSegment(why string) {
	if a.seg != nil {
		a.seg.EndsBecause = why
		a.rep.Segments = append(a.rep.Segments, *a.seg)
		a.seg = nil
	}
}

func (a *auditor) quoted(r *protocol.Evidence) {
	a.rep.Quotes++
	cl, err := claims.Unmarshal(r.Claims)
	if err != nil {
		a.failEvent(CheckClaims, fmt.Errorf("record %d: %w", r.Seq, err))
		a.pending, a.replayer = nil, nil
		return
	}
	qd := claims.QualifyingData(r.Claims)
	opts := []quote.Option{quote.WithNonce(qd), quote.WithRequiredPCRs(quote.AlgSHA256, quotedPCRs...)}
	if a.havePrev {
		opts = append(opts, quote.WithPrevious(a.prevClock))
	}
	res, err := quote.Verify(a.ak, r.Attest, r.Signature, quote.PCRValues(r.PCRs), opts...)
	digest := claims.QuoteDigest(r.Attest, r.Signature)
	if err != nil {
		var fe *failure.Error
		name := CheckQuotes
		if errors.As(err, &fe) && fe.Event.ID == failure.QuoteClockBackwards {
			name = CheckChain
		}
		a.failEvent(name, fmt.Errorf("record %d: %w", r.Seq, err))
		// Nothing in an unverified quote is believed: its PCRs cannot
		// anchor the replay, and the chain continues from its digest only
		// so that later quotes are still judged.
		a.pending, a.replayer = nil, nil
		a.havePrev, a.prevDigest = true, digest
		a.breakSegment(fmt.Sprintf("quote %d did not verify", r.Seq))
		return
	}
	a.pass(CheckQuotes)
	// Claims: the quote signs their hash, so from here they are the TPM's
	// word (as far as the device's software is honest about them).
	claimsOK := true
	bad := func(format string, args ...any) {
		claimsOK = false
		msg := fmt.Sprintf("record %d: ", r.Seq) + fmt.Sprintf(format, args...)
		a.failed(CheckClaims, "%s", msg)
		a.addFailure(failure.Event{ID: failure.EvidenceMalformed, Severity: failure.Critical, Context: msg})
	}
	if cl.Seq != r.Seq {
		bad("claims seq %d, record seq %d", cl.Seq, r.Seq)
	}
	if !bytes.Equal(cl.UEID, a.ueid) {
		bad("claims UEID %x is not this device's", cl.UEID)
	}
	if cl.SelfIssued {
		if !bytes.Equal(cl.Nonce, claims.SelfNonce(cl.Prev, cl.Seq)) {
			bad("self-issued nonce is not derived from prev and seq")
		}
		a.rep.SelfIssued = true
	}
	if claimsOK {
		a.pass(CheckClaims)
	}

	// Chain link.
	clock := res.Attest.ClockInfo
	switch {
	case !a.havePrev:
		// The first quote of the bundle anchors the chain.
	case bytes.Equal(cl.Prev, a.prevDigest):
		a.pass(CheckChain)
	case len(cl.Prev) == 0:
		a.breakSegment(fmt.Sprintf("the chain restarts at record %d (re-enrollment or resync)", r.Seq))
		a.info(CheckChain, "chain restarted at record %d", r.Seq)
	default:
		a.failed(CheckChain, "record %d does not link to the previous quote", r.Seq)
		a.addFailure(failure.Event{ID: failure.EvidenceChainBroken, Severity: failure.Critical, Context: fmt.Sprintf("record %d: prev is not the digest of the previous quote", r.Seq)})
		a.breakSegment(fmt.Sprintf("chain broken at record %d", r.Seq))
	}
	a.havePrev, a.prevDigest, a.prevClock = true, digest, clock

	rebooted := !a.haveBoot || clock.ResetCount != a.resetCount
	if a.haveBoot && rebooted {
		a.rep.Reboots = append(a.rep.Reboots, Reboot{Seq: r.Seq, Time: r.Time, ResetCount: clock.ResetCount, BootID: cl.BootID})
	}
	if a.seg == nil {
		a.seg = &Segment{FromSeq: r.Seq, FromTime: r.Time}
	}
	a.seg.ToSeq, a.seg.ToTime = r.Seq, r.Time
	a.seg.Quotes++

	if rebooted {
		a.endBoot()
		a.bootLogChecked, a.bootFirstSeq = false, r.Seq
	}
	a.firmware(r)
	a.replay(r, cl, rebooted)
	a.haveBoot, a.resetCount = true, clock.ResetCount
}

// firmware replays a pending firmware event log into PCRs 0-9 and
// compares them with this verified quote (evidence/eventlog.Verify).
func (a *auditor) firmware(r *protocol.Evidence) {
	if a.eventLog == nil {
		return
	}
	b := a.eventLog
	a.eventLog = nil
	a.bootLogChecked = true
	l, err := eventlog.Parse(b)
	if err != nil {
		a.failed(CheckEventLog, "record %d: event log does not parse: %v", a.eventLogSeq, err)
		a.addFailure(failure.Event{ID: failure.MeasuredBootInvalidLog, Severity: failure.Critical, Context: fmt.Sprintf("record %d: %v", a.eventLogSeq, err)})
		return
	}
	evs := eventlog.Verify(l, quote.AlgSHA256, r.PCRs[quote.AlgSHA256])
	critical := 0
	for _, ev := range evs {
		a.addFailure(ev)
		if ev.Severity == failure.Critical {
			critical++
			a.failed(CheckEventLog, "record %d: %s", r.Seq, ev.String())
		}
	}
	if critical == 0 {
		a.pass(CheckEventLog)
		a.proofs = append(a.proofs, fmt.Sprintf("the firmware event log of the boot starting at record %d (%d events) replays to the quoted PCRs 0-9", a.bootFirstSeq, len(l.Events)))
	}
}

// endBoot notes a boot whose firmware state no event log explained.
func (a *auditor) endBoot() {
	if a.haveBoot && !a.bootLogChecked {
		a.unchecked(CheckEventLog, "boot starting at record %d: no firmware event log in the bundle; PCRs 0-9 are quoted but not explained", a.bootFirstSeq)
	}
}

// replay moves the boot's PCR 10 replay to this quote and judges the
// entries it covers against the policy in force.
func (a *auditor) replay(r *protocol.Evidence, cl *claims.Claims, rebooted bool) {
	pcr10 := r.PCRs[quote.AlgSHA256][10]
	if rebooted {
		if a.replayer != nil && len(a.pending) > 0 && !a.pendingNew {
			a.failed(CheckIMAReplay, "record %d: a reboot, but the pending entries continue the old log", r.Seq)
		}
		a.replayer = nil
	} else if a.pendingNew {
		a.failed(CheckIMAReplay, "record %d: the IMA log restarts without a TPM reset", r.Seq)
		a.addFailure(failure.Event{ID: failure.IMALogTruncated, Severity: failure.Critical, Context: fmt.Sprintf("record %d: IMA log restarts at entry 0 without a reboot", r.Seq)})
		a.replayer = nil
	}
	a.haveLog = true
	pending := a.pending
	a.pending, a.pendingNew = nil, false
	if a.replayer == nil {
		start := a.pendStart
		if len(pending) == 0 {
			start = cl.IMACount
		}
		if start == 0 {
			a.replayer, _ = ima.NewReplayer(crypto.SHA256, nil)
			a.base = 0
		} else {
			// The log before this point is not in the bundle: anchor the
			// replay at this quote's PCR 10, which the TPM signed; what
			// produced it is not proven.
			rp, err := ima.NewReplayer(crypto.SHA256, pcr10)
			if err != nil {
				a.failed(CheckIMAReplay, "record %d: PCR 10: %v", r.Seq, err)
				return
			}
			a.replayer, a.base = rp, cl.IMACount
			a.unchecked(CheckIMAReplay, "record %d: IMA entries 0..%d of this boot are not in the bundle; replay anchored at the quoted PCR 10", r.Seq, cl.IMACount)
			a.unchecked(CheckIMAPolicy, "IMA entries 0..%d of the boot seen at record %d were not judged (not in the bundle)", cl.IMACount, r.Seq)
			a.pendStart = cl.IMACount
			return
		}
	}
	before := a.base + uint64(a.replayer.Count())
	// Drop pending entries the replayer already covers (none, normally).
	if a.pendStart < before {
		skip := before - a.pendStart
		if skip > uint64(len(pending)) {
			skip = uint64(len(pending))
		}
		pending = pending[skip:]
	}
	n, err := a.replayer.AdvanceTo(pending, pcr10)
	if err != nil {
		a.failEvent(CheckIMAReplay, fmt.Errorf("record %d: %w", r.Seq, err))
		// Re-anchor at this quote so later quotes are still judged.
		a.replayer, _ = ima.NewReplayer(crypto.SHA256, pcr10)
		a.base = cl.IMACount
		a.pendStart = cl.IMACount
		return
	}
	after := a.base + uint64(n)
	a.pass(CheckIMAReplay)
	if after != cl.IMACount {
		// The replay to the quoted PCR 10 holds; only the agent's own
		// count differs (the log changed while it quoted). A warning, as
		// the hub reports it: judging by the count would make a device
		// under heavy measurement UNTRUSTED for what the TPM proves fine.
		a.info(CheckIMAReplay, "record %d: claims say %d IMA entries, the quoted PCR 10 covers %d", r.Seq, cl.IMACount, after)
		a.addFailure(failure.Event{ID: failure.IMACountClaim, Severity: failure.Warning, Context: fmt.Sprintf("record %d: claims say %d IMA entries, the quoted PCR 10 covers %d", r.Seq, cl.IMACount, after)})
	}
	covered := pending[:after-before]
	a.pendStart = after
	a.pending = append([]ima.Entry(nil), pending[after-before:]...)
	a.judge(r, covered, before)
}

// judge evaluates entries (absolute index from first) against the policy
// in force.
func (a *auditor) judge(r *protocol.Evidence, entries []ima.Entry, first uint64) {
	if len(entries) == 0 {
		return
	}
	a.imaChecked += len(entries)
	if !a.policyOK {
		if !a.seenPolicy {
			a.failed(CheckIMAPolicy, "record %d: no runtime policy in force", r.Seq)
			a.addFailure(failure.Event{ID: failure.RuntimePolicyMissing, Severity: failure.Critical, Context: fmt.Sprintf("record %d: %d IMA entries and no runtime policy in force", r.Seq, len(entries))})
		} else {
			a.unchecked(CheckIMAPolicy, "record %d: %d entries under a policy that could not be used", r.Seq, len(entries))
		}
		return
	}
	a.rep.Policies[a.policyIdx].Records++
	var opts []runtimepolicy.EvalOption
	// The boot_aggregate computed from the quoted PCRs 0-9 is allowed for
	// the boot_aggregate entry. The option only changes how that one path
	// is judged (and costs Evaluate a copy of the policy's digest map), so
	// it is given only to batches holding such an entry: normally the
	// first record of a boot.
	if slices.ContainsFunc(entries, func(e ima.Entry) bool { return e.Path == bootAggregatePath }) {
		var pcrs [][]byte
		for i := 0; i < 10; i++ {
			pcrs = append(pcrs, r.PCRs[quote.AlgSHA256][i])
		}
		if agg, err := ima.BootAggregate(pcrs, crypto.SHA256); err == nil {
			opts = append(opts, runtimepolicy.WithBootAggregates(hex.EncodeToString(agg)))
		}
	}
	evs := runtimepolicy.Evaluate(a.policy, entries, opts...)
	for _, ev := range evs {
		if n, err := strconv.ParseUint(ev.Fields["entry"], 10, 64); err == nil {
			abs := strconv.FormatUint(first+n, 10) // 1-based index in the boot's log
			ev.Fields["entry"] = abs
			ev.Context = strings.Replace(ev.Context, fmt.Sprintf("entry %d:", n), "IMA log entry "+abs+":", 1)
		}
		ev.Fields["policy"] = a.rep.Policies[a.policyIdx].Name
		a.addFailure(ev)
		if ev.Severity == failure.Critical {
			a.failed(CheckIMAPolicy, "record %d: %s", r.Seq, ev.Context)
		}
	}
	if len(evs) == 0 {
		a.pass(CheckIMAPolicy)
	}
}

func (a *auditor) finish() {
	rep := a.rep
	if a.seg != nil {
		rep.Segments = append(rep.Segments, *a.seg)
	}
	if rep.Quotes == 0 {
		a.unchecked(CheckQuotes, "the bundle holds no quotes")
	}
	if len(a.pending) > 0 {
		a.unchecked(CheckIMAReplay, "%d IMA entries after the last quote are covered by no quote", len(a.pending))
	}
	// A boot without an event log has quoted but unexplained PCRs 0-9.
	a.endBoot()
	if a.eventLog != nil {
		a.unchecked(CheckEventLog, "the event log of record %d is covered by no quote", a.eventLogSeq)
	}
	if _, ok := a.checks[CheckEventLog]; !ok {
		a.unchecked(CheckEventLog, "no firmware event log in the bundle")
	}
	// Bundle signature: informative, never required.
	end := a.dec.End()
	switch {
	case len(end.Signature) == 0:
		a.info(CheckBundleSignature, "not signed (optional)")
	case a.o.hubKey == nil:
		a.info(CheckBundleSignature, "signed, hub key not pinned")
	default:
		if err := bundle.VerifyEnd(end, a.o.hubKey); err != nil {
			a.failed(CheckBundleSignature, "%v", err)
			a.addFailure(failure.Event{ID: failure.EvidenceMalformed, Severity: failure.Critical, Context: err.Error()})
		} else {
			a.pass(CheckBundleSignature)
			a.check(CheckBundleSignature).passDetail = "the pinned hub key signed this bundle's summary"
		}
	}
	if a.verdicts > 0 {
		a.info(CheckHubVerdicts, "%d hub verdicts carried, not relied on", a.verdicts)
	}
	if !a.seenPolicy && a.imaChecked == 0 {
		a.unchecked(CheckIMAPolicy, "no runtime policy and no IMA entries in the bundle")
	}
	if _, ok := a.checks[CheckPolicySignature]; !ok {
		a.unchecked(CheckPolicySignature, "no policies in the bundle")
	}

	verdict := Trusted
	for _, name := range checkOrder {
		c := a.checks[name]
		if c == nil {
			continue
		}
		ch := Check{Name: name}
		switch {
		case len(c.fails) > 0:
			ch.Result, ch.Detail = Fail, summarize(c.fails)
			verdict = Untrusted
		case len(c.notChecked) > 0:
			if why, ok := a.o.waived[name]; ok {
				ch.Result, ch.Detail = Waived, summarize(c.notChecked)+"; waived: "+why
				rep.Trusted = append(rep.Trusted, fmt.Sprintf("auditor waived %s: %s", name, why))
			} else {
				ch.Result, ch.Detail = NotChecked, summarize(c.notChecked)
				if verdict == Trusted {
					verdict = Inconclusive
				}
			}
			rep.NotProven = append(rep.NotProven, c.notChecked...)
		case c.passes > 0:
			ch.Result, ch.Detail = Pass, c.passDetail
			if ch.Detail == "" {
				ch.Detail = fmt.Sprintf("%d checked", c.passes)
			}
			if len(c.infos) > 0 {
				ch.Detail += "; " + summarize(c.infos)
			}
		default:
			ch.Result, ch.Detail = Info, summarize(c.infos)
		}
		rep.Checks = append(rep.Checks, ch)
	}
	for _, f := range rep.Failures {
		if f.Severity == failure.Critical {
			verdict = Untrusted
		}
	}
	rep.Verdict = verdict
	a.statements()
}

func summarize(s []string) string {
	if len(s) <= 3 {
		return join(s)
	}
	return join(s[:3]) + fmt.Sprintf("; and %d more", len(s)-3)
}

func join(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(x)
	}
	return b.String()
}

// statements writes the proven and trusted lists from what passed.
func (a *auditor) statements() {
	rep := a.rep
	ok := func(name string) bool { c, found := rep.Check(name); return found && c.Result == Pass }
	if ok(CheckQuotes) {
		rep.Proven = append(rep.Proven, fmt.Sprintf("%d quotes were made by the TPM key %s (TPM_GENERATED, ATTEST_QUOTE, PCRs 0-10 sha256)", rep.Quotes, a.akFP))
	}
	if ok(CheckClaims) {
		rep.Proven = append(rep.Proven, "each quote's qualifying data is the SHA-256 of its claims set (device UEID, nonce, sequence number, previous quote, IMA count)")
	}
	if ok(CheckChain) || (rep.Quotes == 1 && ok(CheckQuotes)) {
		for _, s := range rep.Segments {
			rep.Proven = append(rep.Proven, fmt.Sprintf("continuous from %s to %s (records %d-%d, %d quotes, hash-chained, TPM clock never going back)", unix(s.FromTime), unix(s.ToTime), s.FromSeq, s.ToSeq, s.Quotes))
		}
	}
	for _, rb := range rep.Reboots {
		rep.Proven = append(rep.Proven, fmt.Sprintf("the TPM was reset (reboot) before record %d (resetCount %d)", rb.Seq, rb.ResetCount))
	}
	if ok(CheckEventLog) {
		rep.Proven = append(rep.Proven, a.proofs...)
	}
	if ok(CheckIMAReplay) {
		rep.Proven = append(rep.Proven, fmt.Sprintf("the %d IMA entries covered by the quotes replay exactly to the quoted PCR 10", a.imaChecked))
	}
	if ok(CheckIMAPolicy) {
		rep.Proven = append(rep.Proven, "every covered IMA entry was allowed by the runtime policy in force when it was quoted")
	}
	if ok(CheckEKCert) {
		rep.Proven = append(rep.Proven, a.checks[CheckEKCert].passDetail)
	}
	if ok(CheckUEID) {
		rep.Proven = append(rep.Proven, "the device UEID is derived from the EK public key")
	}
	if a.o.ekRootsName != "" {
		rep.Trusted = append(rep.Trusted, "the TPM manufacturer roots in "+a.o.ekRootsName)
	}
	if a.o.trustedRootName != "" {
		rep.Trusted = append(rep.Trusted, "the Sigstore trusted root "+a.o.trustedRootName)
	}
	if a.o.withoutTlog {
		rep.Trusted = append(rep.Trusted, "policy signatures without a transparency-log entry (--without-tlog-unsafe)")
	}
	if rep.SelfIssued {
		rep.Trusted = append(rep.Trusted, "nothing about freshness: nonces were self-issued by the device (air-gapped), so quotes prove order, not time")
	} else if rep.Quotes > 0 {
		rep.Trusted = append(rep.Trusted, "the verifier's nonces were fresh challenges (the hub's claim; an auditor cannot re-check freshness)")
	}
	rep.Trusted = append(rep.Trusted, "record times are the device's clock (unsigned); order is proven by the TPM clock and the chain")
	if len(rep.Policies) > 0 {
		rep.Trusted = append(rep.Trusted, "which policy was in force from when (the policy's place in the bundle, its name and start) is the exporting hub's statement; the signature proves only who approved each policy")
	}
	rep.Trusted = append(rep.Trusted, "the EAT's issuer, subject and requested span are the exporter's labels (the span proven is the one above)")
	rep.Trusted = append(rep.Trusted, "the device's kernel and IMA measured what ran (the TPM proves the log, not the measurer)")
}
