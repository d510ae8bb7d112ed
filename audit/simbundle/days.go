package simbundle

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/veraison/go-cose"

	"github.com/ratatouille/rat/audit/policysig"
	"github.com/ratatouille/rat/device/tpm"
	"github.com/ratatouille/rat/evidence/bundle"
	"github.com/ratatouille/rat/evidence/eventlog"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/quote"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
)

// DaysOptions describe a long bundle for the offline-audit benchmark
// (issue 10, target 6): one device, one boot, a quote every Step seconds
// of device time, IMA entries spread evenly over the quotes, and a policy
// change every half day.
type DaysOptions struct {
	Days          int    // device-days (≥ 1)
	QuotesPerDay  int    // default 8640 (one per 10 s)
	EntriesPerDay int    // default 100,000
	Files         int    // distinct measured files (default 2000)
	EventLog      string // firmware event log replayed at boot (optional)
}

func (o *DaysOptions) defaults() {
	if o.Days < 1 {
		o.Days = 1
	}
	if o.QuotesPerDay <= 0 {
		o.QuotesPerDay = 8640
	}
	if o.EntriesPerDay < 0 {
		o.EntriesPerDay = 0
	} else if o.EntriesPerDay == 0 {
		o.EntriesPerDay = 100_000
	}
	if o.Files <= 0 {
		o.Files = 2000
	}
}

// Key names the options in a cache directory.
func (o DaysOptions) Key() string {
	o.defaults()
	ev := "noevlog"
	if o.EventLog != "" {
		ev = "evlog"
	}
	return fmt.Sprintf("%s-days%d-q%d-e%d-f%d-%s", formatVersion, o.Days, o.QuotesPerDay, o.EntriesPerDay, o.Files, ev)
}

// formatVersion names the bundle encoding in cache keys: v1 wrote every
// record whole, v2 writes delta records (bundle.MediaRecordDelta), v3
// compact records (bundle.MediaRecordCompact).
const formatVersion = "v3"

// DaysFixture is what an auditor needs to verify a generated bundle, and
// what went into it.
type DaysFixture struct {
	Options      DaysOptions
	Quotes       int
	Entries      int // IMA entries, boot_aggregate included
	Policies     int
	Bytes        int64
	GenSeconds   float64
	HubKeyPEM    []byte
	PolicyKeyPEM []byte
	AKPEM        []byte
	EKRootsDir   string
}

// countWriter counts what passes through.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// fileName is the path and content digest of file i at release v: each
// half day a new release changes every file's digest.
func fileName(i, v int) (string, []byte) {
	name := fmt.Sprintf("/usr/lib/rat-bench/%04d/tool-%05d", i%97, i)
	h := sha256.Sum256(fmt.Appendf(nil, "%s@%d", name, v))
	return name, h[:]
}

// releasePolicy approves every file at releases v-1 and v (a rollout:
// devices still running the previous release stay trusted) and, as
// FromEntries does, boot_aggregate.
func releasePolicy(files, v int, bootAggregate ima.Entry) ([]byte, error) {
	es := []ima.Entry{bootAggregate}
	for i := 0; i < files; i++ {
		for _, r := range []int{v - 1, v} {
			if r < 0 {
				continue
			}
			name, d := fileName(i, r)
			e, err := ima.NewNgEntry(10, "sha256", d, name)
			if err != nil {
				return nil, err
			}
			es = append(es, e)
		}
	}
	p, err := runtimepolicy.FromEntries(es, runtimepolicy.WithClock(func() time.Time { return time.Unix(startTime, 0).UTC() }))
	if err != nil {
		return nil, err
	}
	return p.Marshal()
}

// WriteDays streams a bundle of o.Days device-days to w: every quote made
// by the go-tpm-tools simulator with the claims bound as qualifying data,
// every IMA entry logged and extended into PCR 10 before the quote that
// covers it, and a signed policy (key-signed, no transparency log) in
// force for each half day; the entries of half day s are files at release
// s, which only policies s and s+1 approve, so a policy placed wrongly is
// caught. dir receives the EK roots. Records are not kept in memory.
func WriteDays(w io.Writer, dir string, o DaysOptions) (*DaysFixture, error) {
	o.defaults()
	start := time.Now()
	sim, err := simulator.Get()
	if err != nil {
		return nil, fmt.Errorf("simbundle: simulator: %w", err)
	}
	t := tpm.New(transport.FromReadWriteCloser(sim))
	defer t.Close()
	var evLog []byte
	if o.EventLog != "" {
		if evLog, err = os.ReadFile(o.EventLog); err != nil {
			return nil, err
		}
		l, err := eventlog.Parse(evLog)
		if err != nil {
			return nil, err
		}
		for _, e := range l.Events {
			if e.Type == eventlog.EvNoAction || e.PCR == 10 {
				continue
			}
			d, ok := e.Digest(quote.AlgSHA256)
			if !ok {
				return nil, fmt.Errorf("simbundle: event %d has no sha256 digest", e.Num)
			}
			if err := t.Extend(e.PCR, d); err != nil {
				return nil, err
			}
		}
	}
	id, err := newIdentity(t, dir, false)
	if err != nil {
		return nil, err
	}
	total := o.Days * o.QuotesPerDay
	id.header.Token.SpanFrom = startTime
	id.header.Token.SpanTo = startTime + int64(total)*10
	id.header.Token.IAT = id.header.Token.SpanTo
	hubSigner, err := cose.NewSigner(cose.AlgorithmES256, id.hubKey)
	if err != nil {
		return nil, err
	}
	cw := &countWriter{w: w}
	enc, err := bundle.NewEncoder(cw, id.header, bundle.WithSigner(hubSigner))
	if err != nil {
		return nil, err
	}
	polKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pk, _ := x509.MarshalPKIXPublicKey(&polKey.PublicKey)
	hubDER, _ := x509.MarshalPKIXPublicKey(&id.hubKey.PublicKey)
	fx := &DaysFixture{Options: o, EKRootsDir: dir, AKPEM: id.akPEM,
		PolicyKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pk}),
		HubKeyPEM:    pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: hubDER})}

	// boot_aggregate from PCRs 0-9, as the kernel logs it first.
	pcrs, err := t.ReadPCRs([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	if err != nil {
		return nil, err
	}
	vals := make([][]byte, 10)
	for i := range vals {
		vals[i] = pcrs[i]
	}
	agg, err := ima.BootAggregate(vals, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	bootAgg, err := ima.NewNgEntry(10, "sha256", agg, "boot_aggregate")
	if err != nil {
		return nil, err
	}

	a := &agent{t: t, ak: id.ak, ueid: id.ueid, time: startTime, step: 10, nonceSize: 32, eventLog: evLog,
		emit: func(r *protocol.Evidence) error { return enc.WriteRecord(r) }}
	half := max(o.QuotesPerDay/2, 1)
	totalEntries := o.Days * o.EntriesPerDay
	var count uint64 // IMA entries so far (boot_aggregate included)
	pending := []ima.Entry{bootAgg}
	next := 0 // entries measured so far, boot_aggregate excluded
	for i := 0; i < total; i++ {
		seg := i / half
		if i%half == 0 {
			doc, err := releasePolicy(o.Files, seg, bootAgg)
			if err != nil {
				return nil, err
			}
			sb, err := policysig.SignWithKey(context.Background(), doc, polKey)
			if err != nil {
				return nil, err
			}
			if err := enc.WritePolicy(&bundle.Policy{Name: fmt.Sprintf("Release::%d", seg), Since: a.time + a.step, FromSeq: a.seq + 1, Document: doc, SigstoreBundle: sb}); err != nil {
				return nil, err
			}
			fx.Policies++
		}
		// The entries this quote covers: an even share of the total.
		upto := int(int64(i+1) * int64(totalEntries) / int64(total))
		for ; next < upto; next++ {
			name, d := fileName(next%o.Files, seg)
			e, err := ima.NewNgEntry(10, "sha256", d, name)
			if err != nil {
				return nil, err
			}
			pending = append(pending, e)
		}
		if err := a.extend(pending); err != nil {
			return nil, err
		}
		start := count
		count += uint64(len(pending))
		if err := a.quote(pending, start, count, "boot-1"); err != nil {
			return nil, fmt.Errorf("simbundle: quote %d: %w", i+1, err)
		}
		fx.Quotes++
		pending = pending[:0]
	}
	fx.Entries = int(count)
	if err := enc.Close(); err != nil {
		return nil, err
	}
	fx.Bytes = cw.n
	fx.GenSeconds = time.Since(start).Seconds()
	return fx, nil
}

// CachedDays returns a directory holding bundle.cbor for o and the keys to
// verify it (hub.pem, policy.pem, ak.pem, ek-roots/, fixture.json), under
// root/o.Key(). It is generated once (the simulator quotes at ≈ 1.3 ms
// each) and reused by later runs with the same options.
func CachedDays(root string, o DaysOptions) (string, *DaysFixture, error) {
	dir := filepath.Join(root, o.Key())
	if b, err := os.ReadFile(filepath.Join(dir, "fixture.json")); err == nil {
		var fx DaysFixture
		if err := json.Unmarshal(b, &fx); err == nil {
			fx.EKRootsDir = filepath.Join(dir, "ek-roots")
			return dir, &fx, nil
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", nil, err
	}
	if old := filepath.Join(root, "v1"+strings.TrimPrefix(o.Key(), formatVersion)); dirExists(old) {
		// The same evidence generated before delta records: re-encoded, as
		// the hub exports its stored records, instead of quoted again.
		return transcode(old, dir)
	}
	tmp, err := os.MkdirTemp(root, ".gen-")
	if err != nil {
		return "", nil, err
	}
	defer os.RemoveAll(tmp)
	roots := filepath.Join(tmp, "ek-roots")
	if err := os.Mkdir(roots, 0o755); err != nil {
		return "", nil, err
	}
	f, err := os.Create(filepath.Join(tmp, "bundle.cbor"))
	if err != nil {
		return "", nil, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	fx, err := WriteDays(bw, roots, o)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", nil, fmt.Errorf("simbundle: generate %s: %w", o.Key(), err)
	}
	for name, b := range map[string][]byte{"hub.pem": fx.HubKeyPEM, "policy.pem": fx.PolicyKeyPEM, "ak.pem": fx.AKPEM} {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			return "", nil, err
		}
	}
	meta, _ := json.MarshalIndent(fx, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "fixture.json"), meta, 0o644); err != nil {
		return "", nil, err
	}
	_ = os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return "", nil, err
	}
	fx.EKRootsDir = filepath.Join(dir, "ek-roots")
	return dir, fx, nil
}

func dirExists(p string) bool {
	fi, err := os.Stat(filepath.Join(p, "fixture.json"))
	return err == nil && !fi.IsDir()
}

// transcode re-encodes the cached bundle in from with the current encoder
// into to (the records' bytes unchanged; the end is not signed, the hub's
// private key not being kept in v1 caches).
func transcode(from, to string) (string, *DaysFixture, error) {
	b, err := os.ReadFile(filepath.Join(from, "fixture.json"))
	if err != nil {
		return "", nil, err
	}
	var fx DaysFixture
	if err := json.Unmarshal(b, &fx); err != nil {
		return "", nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(to), ".gen-")
	if err != nil {
		return "", nil, err
	}
	defer os.RemoveAll(tmp)
	in, err := os.Open(filepath.Join(from, "bundle.cbor"))
	if err != nil {
		return "", nil, err
	}
	defer in.Close()
	out, err := os.Create(filepath.Join(tmp, "bundle.cbor"))
	if err != nil {
		return "", nil, err
	}
	cw := &countWriter{w: bufio.NewWriterSize(out, 1<<20)}
	err = reencode(bufio.NewReaderSize(in, 1<<20), cw)
	if err == nil {
		err = cw.w.(*bufio.Writer).Flush()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", nil, fmt.Errorf("simbundle: transcode %s: %w", from, err)
	}
	fx.Bytes = cw.n
	roots := filepath.Join(tmp, "ek-roots")
	if err := os.Mkdir(roots, 0o755); err != nil {
		return "", nil, err
	}
	ca, err := os.ReadFile(filepath.Join(from, "ek-roots", "ca.pem"))
	if err != nil {
		return "", nil, err
	}
	files := map[string][]byte{"hub.pem": fx.HubKeyPEM, "policy.pem": fx.PolicyKeyPEM, "ak.pem": fx.AKPEM, "ek-roots/ca.pem": ca}
	meta, _ := json.MarshalIndent(&fx, "", "  ")
	files["fixture.json"] = meta
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			return "", nil, err
		}
	}
	_ = os.RemoveAll(to)
	if err := os.Rename(tmp, to); err != nil {
		return "", nil, err
	}
	fx.EKRootsDir = filepath.Join(to, "ek-roots")
	return to, &fx, nil
}

// reencode copies a bundle element by element through a new encoder.
func reencode(r io.Reader, w io.Writer) error {
	d, err := bundle.NewDecoder(r)
	if err != nil {
		return err
	}
	enc, err := bundle.NewEncoder(w, d.Header())
	if err != nil {
		return err
	}
	for {
		it, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch v := it.(type) {
		case *bundle.Policy:
			err = enc.WritePolicy(v)
		case *protocol.Evidence:
			err = enc.WriteRecord(v)
		case *bundle.Verdict:
			err = enc.WriteVerdict(v)
		}
		if err != nil {
			return err
		}
	}
	return enc.Close()
}
