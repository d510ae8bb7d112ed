package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fxamacker/cbor/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/quote"
)

// Device states.
const (
	Enrolling      = "ENROLLING"
	Trusted        = "TRUSTED"
	Untrusted      = "UNTRUSTED"
	Stale          = "STALE"
	Decommissioned = "DECOMMISSIONED"
)

// Nonce is one challenge issued to a device.
type Nonce struct {
	Idx   uint64    `json:"idx"`
	Value []byte    `json:"value"`
	At    time.Time `json:"at"`
}

// Device is everything the hub knows about one device.
type Device struct {
	Key    string `json:"key"` // fleet/device
	ID     string `json:"id"`
	Fleet  string `json:"fleet"`
	Group  string `json:"group"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`

	EKPublic   []byte   `json:"ek_public"`
	EKCerts    [][]byte `json:"ek_certs,omitempty"`
	EKVerified bool     `json:"ek_verified"`
	EKIssuer   string   `json:"ek_issuer,omitempty"`
	TOFU       bool     `json:"tofu,omitempty"`
	AKPublic   []byte   `json:"ak_public"`
	Baseline   bool     `json:"baseline,omitempty"`

	EnrolledAt   time.Time `json:"enrolled_at"`
	LastSeen     time.Time `json:"last_seen"`
	LastVerified time.Time `json:"last_verified"`

	// Chain position.
	NextSeq   uint64          `json:"next_seq"`
	QuotePrev []byte          `json:"quote_prev,omitempty"`
	Clock     quote.ClockInfo `json:"clock"`
	HaveClock bool            `json:"have_clock"`
	Nonces    NonceWindow     `json:"nonces,omitempty"`
	NonceUsed uint64          `json:"nonce_used"` // Idx of the nonce the last accepted quote used
	NonceNext uint64          `json:"nonce_next"`
	Thinned   uint64          `json:"thinned,omitempty"`

	// IMA position for the current boot.
	BootID       string `json:"boot_id,omitempty"`
	BootStartSeq uint64 `json:"boot_start_seq,omitempty"`
	IMACount     uint64 `json:"ima_count"`
	PCR10        []byte `json:"pcr10,omitempty"`
	PendingStart uint64 `json:"pending_start,omitempty"`
	PendingIMA   []byte `json:"pending_ima,omitempty"`
	Release      string `json:"release,omitempty"`
	// ReleaseFrom is the release the device ran before it switched to
	// Release without a reboot, since ReleaseSwitched; empty once it
	// rebooted or the rollout window closed (hub/verifier release.go).
	ReleaseFrom     string    `json:"release_from,omitempty"`
	ReleaseSwitched time.Time `json:"release_switched,omitzero"`

	// Measured boot, from the firmware event log of the current boot.
	EventLogVerified bool  `json:"event_log_verified,omitempty"`
	SecureBoot       *bool `json:"secure_boot,omitempty"`

	PolicyDigest string `json:"policy_digest,omitempty"`
	// PolicyUses records which policy judged which records: each entry is
	// in force from FromSeq on (for exports).
	PolicyUses []PolicyUse `json:"policy_uses,omitempty"`
	// Binding is the hub's signed statement that the AK was bound to the
	// EK by credential activation (COSE_Sign1, evidence/bundle).
	Binding  []byte          `json:"binding,omitempty"`
	Failures []failure.Event `json:"failures,omitempty"`
	Quotes   uint64          `json:"quotes"`
}

// deviceIdentity is what enrollment fixes about a device: its EK, the EK
// certificates and how they verified, the AK and the hub's binding of the
// two. Save stores it apart from the rest of the record (bIdentity), and
// writes it only when it changed: the record proper is rewritten with
// every accepted evidence record, and with an EK certificate the identity
// was ≈ 2 KB of its ≈ 2.9 KB. A bbolt leaf then holds several devices in
// one page instead of spilling onto a second, which the commit allocated,
// filled and wrote for each record (BenchmarkWriteAmplification, 256
// writers at one CPU: 51–52 → 48–50 µs and 20.9 → 17.9 KB written per
// record). Its keys are the record's own.
type deviceIdentity struct {
	EKPublic   []byte    `json:"ek_public"`
	EKCerts    [][]byte  `json:"ek_certs,omitempty"`
	EKVerified bool      `json:"ek_verified"`
	EKIssuer   string    `json:"ek_issuer,omitempty"`
	TOFU       bool      `json:"tofu,omitempty"`
	AKPublic   []byte    `json:"ak_public"`
	Baseline   bool      `json:"baseline,omitempty"`
	EnrolledAt time.Time `json:"enrolled_at"`
	Binding    []byte    `json:"binding,omitempty"`
}

// PolicyUse says a policy judged a device's records from FromSeq on.
type PolicyUse struct {
	Digest  string    `json:"digest"`
	FromSeq uint64    `json:"from_seq"`
	Since   time.Time `json:"since"`
}

// UsePolicy records that digest judges d's records from seq on.
func (d *Device) UsePolicy(digest string, seq uint64, now time.Time) {
	d.PolicyDigest = digest
	if n := len(d.PolicyUses); n > 0 && d.PolicyUses[n-1].Digest == digest {
		return
	}
	d.PolicyUses = append(d.PolicyUses, PolicyUse{Digest: digest, FromSeq: seq, Since: now})
}

// Event is one entry of a device's history.
type Event struct {
	Time   time.Time      `json:"time"`
	Kind   string         `json:"kind"` // state, failure, rejected, enrolled, action, policy
	Seq    uint64         `json:"seq,omitempty"`
	State  string         `json:"state,omitempty"`
	Detail string         `json:"detail,omitempty"`
	Event  *failure.Event `json:"event,omitempty"`
}

// Policy is one runtime policy version for a group.
type Policy struct {
	Group     string    `json:"group"`
	Name      string    `json:"name"`
	Digest    string    `json:"digest"` // sha256 of the policy JSON
	JSON      []byte    `json:"json"`
	Bundle    []byte    `json:"bundle,omitempty"` // Sigstore bundle
	Source    string    `json:"source"`           // baseline, api, git
	Commit    string    `json:"commit,omitempty"`
	Signer    string    `json:"signer,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
	LogIndex  int64     `json:"log_index,omitempty"`
	LogID     string    `json:"log_id,omitempty"`
	Signed    time.Time `json:"signed,omitempty"`
	Status    string    `json:"status"` // active, superseded, rejected
	Why       string    `json:"why,omitempty"`
	Activated time.Time `json:"activated"`
}

// Store is the hub's storage.
type Store interface {
	Device(key string) (*Device, error)
	Devices() ([]Device, error)
	// Save writes d, appends events and, if raw is non-nil, stores the
	// evidence record (seq, raw) — all atomically.
	Save(d *Device, events []Event, seq uint64, raw []byte) error
	Events(key string, limit int) ([]Event, error)
	// AppendEvents adds events to a device's history alone.
	AppendEvents(key string, events []Event) error
	// Evidence calls fn for each stored record of key with seq in [from, to].
	Evidence(key string, from, to uint64, fn func(seq uint64, raw []byte) error) error
	EvidenceRecord(key string, seq uint64) ([]byte, error)
	// EvidenceStored is Evidence with the time the store wrote each record
	// (zero for a record stored before the store kept it).
	EvidenceStored(key string, from, to uint64, fn func(seq uint64, stored time.Time, raw []byte) error) error
	// DeleteEvidence removes, for each cut, the device's evidence records
	// below it and says how many it removed (retention: hub/server
	// retention.go).
	DeleteEvidence(cuts []EvidenceCut) (int, error)
	// PutPolicy stores p; if p is active, the group's previous active
	// policy becomes superseded.
	PutPolicy(p *Policy) error
	ActivePolicy(group string) (*Policy, error)
	Policies(group string) ([]Policy, error)
	// PutKV and GetKV hold small hub-wide values (keys, settings).
	PutKV(key string, value []byte) error
	GetKV(key string) ([]byte, error)
	Close() error
}

// ErrNotFound is returned for a missing record.
var ErrNotFound = errors.New("store: not found")

var (
	bDevices  = []byte("devices")
	bEvents   = []byte("events")
	bEvidence = []byte("evidence")
	bPolicies = []byte("policies")
	bActive   = []byte("active")
	bKV       = []byte("kv")
	// bIdentity holds each device's deviceIdentity (key: the device key),
	// for records stored with IdentityApart (storedDevice).
	bIdentity = []byte("identity")
	// bBriefs holds each device's DeviceBrief (briefEncoding), written with
	// every device record, so that the hub's start reads ≈ 60-100 bytes
	// per device instead of decoding every whole record.
	bBriefs = []byte("briefs")
	// bMeta holds the store's own format markers: under kBriefs, the
	// format of the briefs bucket (briefsFormat).
	bMeta   = []byte("meta")
	kBriefs = []byte("briefs")
)

// briefsFormat is the format of the briefs: 2 added each device's group
// and release (for the hub's rollout tally). A store whose briefs are of
// another format (or that has none) gets them rebuilt from the device
// records once, at open.
const briefsFormat = 2

// Bolt is the embedded store.
type Bolt struct {
	db *bolt.DB
	// Writes from Save and AppendEvents go through one committer: while it
	// commits (two fsyncs), new writes queue, and the next commit takes all
	// of them. bbolt's own Batch closes a batch MaxBatchDelay after its
	// first call, so under load several small batches queued behind each
	// fsync, and the hub's throughput was fsyncs/s × a few records.
	reqs      chan commitReq
	closeMu   sync.RWMutex
	closed    bool
	committed sync.WaitGroup
	// commits and grouped count transactions and the writes they
	// carried (their ratio is the group size: TestGroupCommitOneCPU).
	commits, grouped atomic.Uint64
	// active caches the bActive bucket (group → digest of its active
	// policy), which every quoted record reads. PutPolicy, its only
	// writer, holds activeMu while it commits and then updates the cache,
	// and a miss fills the cache under activeMu too, so a fill can never
	// put back a digest a commit has replaced.
	activeMu sync.Mutex
	active   map[string]string
	// idPrints is, per device, the fingerprint of the identity this store
	// last wrote or found written (Save).
	idMu     sync.Mutex
	idPrints map[string]uint64
	now      func() time.Time // stamps evidence records (WithClock)
}

type commitReq struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// maxGroup bounds the writes of one commit (bounds the transaction's
// dirty pages, as bbolt's MaxBatchSize does).
const maxGroup = 2048

// batchErr names the request of a group whose function failed.
type batchErr struct {
	i   int
	err error
}

func (e *batchErr) Error() string { return e.err.Error() }

func (s *Bolt) committer() {
	defer s.committed.Done()
	for r := range s.reqs {
		// Let the writers that are runnable now queue their writes
		// first: with one P (a one-core hub, GOMAXPROCS=1) they cannot
		// run while the committer does, nor, for a while, while it
		// waits in fdatasync, so without this every group was one
		// write (≈ 1.1 per commit measured, one fsync per record).
		runtime.Gosched()
		group := []commitReq{r}
	drain:
		for len(group) < maxGroup {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break drain
				}
				group = append(group, r)
			default:
				break drain
			}
		}
		s.runGroup(group)
	}
}

// runGroup commits group in one transaction. If one function fails, the
// transaction is rolled back, that request gets its error and the others
// are committed again without it (bbolt's Batch does the same).
func (s *Bolt) runGroup(group []commitReq) {
	for len(group) > 0 {
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i, r := range group {
				if err := r.fn(tx); err != nil {
					return &batchErr{i: i, err: err}
				}
			}
			return nil
		})
		s.commits.Add(1)
		var be *batchErr
		if errors.As(err, &be) {
			group[be.i].done <- be.err
			group = append(group[:be.i:be.i], group[be.i+1:]...)
			continue
		}
		s.grouped.Add(uint64(len(group)))
		for _, r := range group {
			r.done <- err
		}
		return
	}
}

// write runs fn in a group commit and returns when it is durable.
func (s *Bolt) write(fn func(*bolt.Tx) error) error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return errors.New("store: closed")
	}
	done := make(chan error, 1)
	s.reqs <- commitReq{fn: fn, done: done}
	s.closeMu.RUnlock()
	return <-done
}

// Option configures OpenBolt.
type Option func(*Bolt)

// WithClock sets the clock that stamps each evidence record with the time
// the store wrote it (default time.Now; for tests that age records).
func WithClock(now func() time.Time) Option { return func(s *Bolt) { s.now = now } }

// OpenBolt opens or creates the store at path.
func OpenBolt(path string, opts ...Option) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bDevices, bEvents, bEvidence, bPolicies, bActive, bKV, bMeta, bIdentity} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if tx.Bucket(bBriefs) == nil || !bytes.Equal(tx.Bucket(bMeta).Get(kBriefs), []byte{briefsFormat}) {
			return buildBriefs(tx)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	s := &Bolt{db: db, reqs: make(chan commitReq, maxGroup), active: map[string]string{}, idPrints: map[string]uint64{}, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	s.committed.Add(1)
	go s.committer()
	return s, nil
}

// Close closes the file.
func (s *Bolt) Close() error {
	s.closeMu.Lock()
	if !s.closed {
		s.closed = true
		close(s.reqs)
	}
	s.closeMu.Unlock()
	s.committed.Wait()
	return s.db.Close()
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// Device reads one device.
func (s *Bolt) Device(key string) (*Device, error) {
	var d *Device
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bDevices).Get([]byte(key))
		if v == nil {
			return ErrNotFound
		}
		d = new(Device)
		return readDevice(tx, []byte(key), v, d)
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Devices lists all devices.
func (s *Bolt) Devices() ([]Device, error) {
	var out []Device
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bDevices).ForEach(func(k, v []byte) error {
			var d Device
			if err := readDevice(tx, k, v, &d); err != nil {
				return err
			}
			out = append(out, d)
			return nil
		})
	})
	return out, err
}

// Device records are stored as CBOR (keys are the JSON field names, byte
// strings raw instead of base64, times as RFC 3339 strings with
// nanoseconds), behind the self-described CBOR tag so they can never be
// mistaken for the JSON records older hubs wrote, which are still read.
// Encoding and decoding JSON device records (a full nonce window is ≈ 6 KB)
// was a fifth of the hub's CPU per record. The nonce window is one packed
// byte string (NonceWindow); records with the array form are still read.
var (
	devEnc cbor.UserBufferEncMode
	devDec cbor.DecMode
)

func init() {
	var err error
	if devEnc, err = (cbor.EncOptions{Time: cbor.TimeRFC3339Nano}).UserBufferEncMode(); err != nil {
		panic(err)
	}
	if devDec, err = (cbor.DecOptions{MaxArrayElements: 1 << 20, MaxMapPairs: 1 << 20}).DecMode(); err != nil {
		panic(err)
	}
}

// selfDescribed is the CBOR self-described tag (55799) that starts every
// device record written as CBOR.
var selfDescribed = []byte{0xd9, 0xd9, 0xf7}

// encodeDevice encodes d behind the self-described tag, into one buffer
// sized for the record (the hub encodes one per accepted record: a
// Marshal then a copy behind the tag was twice the record's bytes).
func encodeDevice(d *Device) ([]byte, error) { return encodeDeviceAs(d, d) }

// encodeDeviceAs encodes v, d's record (d itself or a storedDevice of it).
func encodeDeviceAs(d *Device, v any) ([]byte, error) {
	n := 1024 + 40*len(d.Nonces) + len(d.EKPublic) + len(d.AKPublic) + len(d.Binding) + len(d.PendingIMA) + len(d.QuotePrev) + len(d.PCR10)
	for _, c := range d.EKCerts {
		n += len(c)
	}
	buf := bytes.NewBuffer(make([]byte, 0, n))
	buf.Write(selfDescribed)
	if err := devEnc.MarshalToBuffer(v, buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decodeDevice reads a device record (CBOR, or JSON from older hubs) into
// v, a *Device or *DeviceBrief.
func decodeDevice(b []byte, v any) error {
	if len(b) > 0 && b[0] == '{' {
		return json.Unmarshal(b, v)
	}
	if !bytes.HasPrefix(b, selfDescribed) {
		return errors.New("store: device record is neither tagged CBOR nor JSON")
	}
	if err := devDec.Unmarshal(b[len(selfDescribed):], v); err != nil {
		return fmt.Errorf("store: device record: %w", err)
	}
	return nil
}

// readDevice decodes the stored record v of device key into d, with its
// identity from bIdentity when the record keeps it apart.
func readDevice(tx *bolt.Tx, key, v []byte, d *Device) error {
	var rec storedDevice
	if err := decodeDevice(v, &rec); err != nil {
		return err
	}
	*d = rec.Device
	if !rec.IdentityApart {
		return nil // written whole (before identities were kept apart)
	}
	iv := tx.Bucket(bIdentity).Get(key)
	if iv == nil {
		return fmt.Errorf("store: device %s: its identity record is missing", key)
	}
	var id deviceIdentity
	if err := devDec.Unmarshal(iv, &id); err != nil {
		return fmt.Errorf("store: device %s: identity record: %w", key, err)
	}
	setIdentity(d, &id)
	return nil
}

// identityOf is d's identity fields.
func identityOf(d *Device) *deviceIdentity {
	return &deviceIdentity{EKPublic: d.EKPublic, EKCerts: d.EKCerts, EKVerified: d.EKVerified, EKIssuer: d.EKIssuer, TOFU: d.TOFU,
		AKPublic: d.AKPublic, Baseline: d.Baseline, EnrolledAt: d.EnrolledAt, Binding: d.Binding}
}

// setIdentity sets d's identity fields to id's.
func setIdentity(d *Device, id *deviceIdentity) {
	d.EKPublic, d.EKCerts, d.EKVerified, d.EKIssuer, d.TOFU = id.EKPublic, id.EKCerts, id.EKVerified, id.EKIssuer, id.TOFU
	d.AKPublic, d.Baseline, d.EnrolledAt, d.Binding = id.AKPublic, id.Baseline, id.EnrolledAt, id.Binding
}

// identityPrint fingerprints d's identity fields (Save: was it written?).
func identityPrint(d *Device) uint64 {
	var h maphash.Hash
	h.SetSeed(printSeed)
	w := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	w(d.EKPublic)
	w(u64(uint64(len(d.EKCerts))))
	for _, c := range d.EKCerts {
		w(c)
	}
	w(d.AKPublic)
	w(d.Binding)
	w([]byte(d.EKIssuer))
	w([]byte{b2u(d.EKVerified), b2u(d.TOFU), b2u(d.Baseline)})
	w(u64(uint64(d.EnrolledAt.UnixNano())))
	w([]byte(d.EnrolledAt.Location().String()))
	return h.Sum64()
}

var printSeed = maphash.MakeSeed()

func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// storedDevice is a device record as stored: the Device, and whether its
// identity is apart (then the Device's identity fields are empty in it).
type storedDevice struct {
	Device
	IdentityApart bool `json:"identity_apart,omitempty"`
}

// splitDevice is d's record without its identity, and the identity if
// withID.
func splitDevice(d *Device, withID bool) (rec, id []byte, err error) {
	sd := storedDevice{Device: *d, IdentityApart: true}
	setIdentity(&sd.Device, &deviceIdentity{})
	if rec, err = encodeDeviceAs(&sd.Device, &sd); err != nil || !withID {
		return rec, nil, err
	}
	id, err = devEnc.Marshal(identityOf(d))
	return rec, id, err
}

// DeviceBrief is what the hub needs of every device at start: for its
// staleness index (key, id, state, last verification) and its rollout
// tally (group, release, state).
type DeviceBrief struct {
	Key          string    `json:"key"`
	ID           string    `json:"id"`
	State        string    `json:"state"`
	LastVerified time.Time `json:"last_verified"`
	Group        string    `json:"group"`
	Release      string    `json:"release"`
	// Partial: the brief was written by a hub older than briefsFormat 2
	// (into a store this one had already upgraded), so Group and Release
	// are unknown, not empty: read the device record for them.
	Partial bool `json:"-"`
}

// briefEncoding is a DeviceBrief as stored in the briefs bucket (the key
// is the device key). Format is briefsFormat in every brief written since
// format 2: a brief without it (an older hub wrote it) knows nothing of
// the device's group and release.
type briefEncoding struct {
	Format       uint8  `cbor:"0,keyasint,omitempty"`
	ID           string `cbor:"1,keyasint"`
	State        string `cbor:"2,keyasint"`
	LastVerified int64  `cbor:"3,keyasint,omitempty"` // Unix nanoseconds, 0 for never
	Group        string `cbor:"4,keyasint,omitempty"`
	Release      string `cbor:"5,keyasint,omitempty"`
}

// briefGranularity is how precisely a brief holds LastVerified: to the
// minute below, so that a device attesting every 10 s rewrites its brief
// (one more dirtied bbolt page per record) once a minute instead of with
// every record. A brief's time only schedules the hub's staleness check,
// which reads the device record before it decides, so a time up to a
// minute early costs at most an early look at a device after a restart.
const briefGranularity = time.Minute

func encodeBrief(d *Device) ([]byte, error) {
	return encodeBriefOf(&DeviceBrief{ID: d.ID, State: d.State, LastVerified: d.LastVerified, Group: d.Group, Release: d.Release})
}

func encodeBriefOf(d *DeviceBrief) ([]byte, error) {
	b := briefEncoding{Format: briefsFormat, ID: d.ID, State: d.State, Group: d.Group, Release: d.Release}
	if !d.LastVerified.IsZero() {
		b.LastVerified = d.LastVerified.Truncate(briefGranularity).UnixNano()
	}
	return devEnc.Marshal(&b)
}

// buildBriefs fills the briefs bucket from every device record, and marks
// it of briefsFormat: once, when a store written before the bucket
// existed, or before its current format, is opened. Each record is
// decoded into a DeviceBrief (its fields have the record's names), which
// skips the rest of the record instead of making it (the first start of
// rat-hub on a warm store of 100,000 devices: 1.8 s of CPU instead of 2.5).
func buildBriefs(tx *bolt.Tx) error {
	if tx.Bucket(bBriefs) != nil {
		if err := tx.DeleteBucket(bBriefs); err != nil {
			return fmt.Errorf("briefs: %w", err)
		}
	}
	bb, err := tx.CreateBucket(bBriefs)
	if err != nil {
		return err
	}
	err = tx.Bucket(bDevices).ForEach(func(k, v []byte) error {
		var d DeviceBrief
		if err := decodeDevice(v, &d); err != nil {
			return fmt.Errorf("device %s: %w", k, err)
		}
		b, err := encodeBriefOf(&d)
		if err != nil {
			return err
		}
		return bb.Put(k, b)
	})
	if err != nil {
		return err
	}
	return tx.Bucket(bMeta).Put(kBriefs, []byte{briefsFormat})
}

// Briefs lists every device's brief, for the hub's staleness index and
// rollout tally at start. They come from the briefs bucket, which Save
// writes in the same transaction as the device record: decoding every
// whole record instead (CBOR with a nonce window, keys, certificates) took
// ≈ 1.5 s of CPU for 100,000 devices, and 30-40 s from a cold page cache,
// the records being scattered over a store of 1.3 GB. A hub older than
// the bucket would leave it behind if it wrote to the store; one older
// than format 2 writes briefs without group and release, which come back
// Partial. The hub uses briefs to propose staleness, and re-reads the
// record before it changes anything; its rollout tally reads the record
// of a Partial brief.
func (s *Bolt) Briefs() ([]DeviceBrief, error) {
	var out []DeviceBrief
	err := s.db.View(func(tx *bolt.Tx) error {
		bb := tx.Bucket(bBriefs)
		out = make([]DeviceBrief, 0, bb.Stats().KeyN)
		// Few distinct groups and releases: one string each, not one per
		// device.
		names := map[string]string{}
		intern := func(v string) string {
			if n, ok := names[v]; ok {
				return n
			}
			names[v] = v
			return v
		}
		return bb.ForEach(func(k, v []byte) error {
			var b briefEncoding
			if err := devDec.Unmarshal(v, &b); err != nil {
				return fmt.Errorf("store: brief of %s: %w", k, err)
			}
			d := DeviceBrief{Key: string(k), ID: b.ID, State: intern(b.State), Group: intern(b.Group), Release: intern(b.Release), Partial: b.Format < briefsFormat}
			if b.LastVerified != 0 {
				d.LastVerified = time.Unix(0, b.LastVerified).UTC()
			}
			out = append(out, d)
			return nil
		})
	})
	return out, err
}

// Save writes a device update atomically; concurrent calls share commits.
func (s *Bolt) Save(d *Device, events []Event, seq uint64, raw []byte) error {
	// The identity is encoded and compared only when its fingerprint is
	// not the one this store last wrote for the device (enrollment, the
	// first save after a start): encoding it for every record cost what
	// keeping it apart saved.
	fp := identityPrint(d)
	s.idMu.Lock()
	last, ok := s.idPrints[d.Key]
	same := ok && last == fp
	s.idMu.Unlock()
	dv, idv, err := splitDevice(d, !same)
	if err != nil {
		return fmt.Errorf("store: encode device %s: %w", d.Key, err)
	}
	var stamped []byte
	if raw != nil {
		stamped = stamp(raw, s.now())
	}
	brief, err := encodeBrief(d)
	if err != nil {
		return fmt.Errorf("store: encode device %s: %w", d.Key, err)
	}
	evs := make([][]byte, len(events))
	for i := range events {
		if evs[i], err = json.Marshal(events[i]); err != nil {
			return err
		}
	}
	err = s.write(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bDevices).Put([]byte(d.Key), dv); err != nil {
			return err
		}
		// The identity changes at enrollment only: compared in place
		// (a read of the mapped page), written when it differs.
		if ib := tx.Bucket(bIdentity); idv != nil && !bytes.Equal(ib.Get([]byte(d.Key)), idv) {
			if err := ib.Put([]byte(d.Key), idv); err != nil {
				return err
			}
		}
		if bb := tx.Bucket(bBriefs); !bytes.Equal(bb.Get([]byte(d.Key)), brief) {
			if err := bb.Put([]byte(d.Key), brief); err != nil {
				return err
			}
		}
		if len(evs) > 0 {
			eb, err := tx.Bucket(bEvents).CreateBucketIfNotExists([]byte(d.Key))
			if err != nil {
				return err
			}
			for _, v := range evs {
				n, _ := eb.NextSequence()
				if err := eb.Put(u64(n), v); err != nil {
					return err
				}
			}
		}
		if raw != nil {
			xb, err := tx.Bucket(bEvidence).CreateBucketIfNotExists([]byte(d.Key))
			if err != nil {
				return err
			}
			if err := xb.Put(u64(seq), stamped); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && !same {
		s.idMu.Lock()
		s.idPrints[d.Key] = fp
		s.idMu.Unlock()
	}
	return err
}

// AppendEvents adds events to key's history.
func (s *Bolt) AppendEvents(key string, events []Event) error {
	return s.write(func(tx *bolt.Tx) error {
		eb, err := tx.Bucket(bEvents).CreateBucketIfNotExists([]byte(key))
		if err != nil {
			return err
		}
		for i := range events {
			v, err := json.Marshal(events[i])
			if err != nil {
				return err
			}
			n, _ := eb.NextSequence()
			if err := eb.Put(u64(n), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// Events returns the newest limit events of key, oldest first.
func (s *Bolt) Events(key string, limit int) ([]Event, error) {
	var out []Event
	err := s.db.View(func(tx *bolt.Tx) error {
		eb := tx.Bucket(bEvents).Bucket([]byte(key))
		if eb == nil {
			return nil
		}
		c := eb.Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

// Evidence walks stored records.
func (s *Bolt) Evidence(key string, from, to uint64, fn func(uint64, []byte) error) error {
	return s.EvidenceStored(key, from, to, func(seq uint64, _ time.Time, raw []byte) error { return fn(seq, raw) })
}

// EvidenceStored is Evidence with the time the store wrote each record
// (zero for a record stored before the store kept it).
func (s *Bolt) EvidenceStored(key string, from, to uint64, fn func(seq uint64, stored time.Time, raw []byte) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		xb := tx.Bucket(bEvidence).Bucket([]byte(key))
		if xb == nil {
			return nil
		}
		c := xb.Cursor()
		for k, v := c.Seek(u64(from)); k != nil && binary.BigEndian.Uint64(k) <= to; k, v = c.Next() {
			at, raw := unstamp(v)
			if err := fn(binary.BigEndian.Uint64(k), at, bytes.Clone(raw)); err != nil {
				return err
			}
		}
		return nil
	})
}

// EvidenceRecord returns one stored record.
func (s *Bolt) EvidenceRecord(key string, seq uint64) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		xb := tx.Bucket(bEvidence).Bucket([]byte(key))
		if xb == nil {
			return ErrNotFound
		}
		v := xb.Get(u64(seq))
		if v == nil {
			return ErrNotFound
		}
		_, raw := unstamp(v)
		out = bytes.Clone(raw)
		return nil
	})
	return out, err
}

// An evidence record is stored behind a stamp: 0x00, then the store's
// clock when it wrote the record (Unix nanoseconds, 8 bytes big endian).
// Retention goes by it: a record's own time is the device's clock, its
// word only, and a device that had set it back would have had its
// evidence deleted early. A record is a CBOR map, which never starts with
// 0x00, so a record stored bare (before stamps) reads as such.
const stampLen = 9

func stamp(raw []byte, t time.Time) []byte {
	v := make([]byte, stampLen+len(raw))
	binary.BigEndian.PutUint64(v[1:stampLen], uint64(t.UnixNano()))
	copy(v[stampLen:], raw)
	return v
}

// unstamp returns the stamp's time (zero for a bare record) and the record.
func unstamp(v []byte) (time.Time, []byte) {
	if len(v) < stampLen || v[0] != 0 {
		return time.Time{}, v
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v[1:stampLen]))).UTC(), v[stampLen:]
}

// maxDeletes bounds the records one DeleteEvidence commit removes, so a
// first prune of a long history does not build one huge transaction while
// the devices' writes wait behind it.
const maxDeletes = 2048

// EvidenceCut asks DeleteEvidence to remove Key's records with seq < Before.
type EvidenceCut struct {
	Key    string
	Before uint64
}

// DeleteEvidence removes the records below each cut, oldest first, in
// commits of at most maxDeletes records (of as many devices as fit) shared
// with the devices' writes: one commit per device would have made an
// hourly pass over 100,000 devices 100,000 fsyncs long.
func (s *Bolt) DeleteEvidence(cuts []EvidenceCut) (int, error) {
	total, i := 0, 0
	for i < len(cuts) {
		var n, next int
		err := s.write(func(tx *bolt.Tx) error {
			n, next = 0, i // a retried group starts this commit again
			for ; next < len(cuts); next++ {
				xb := tx.Bucket(bEvidence).Bucket([]byte(cuts[next].Key))
				if xb == nil {
					continue
				}
				c := xb.Cursor()
				for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) < cuts[next].Before; k, _ = c.First() {
					if n == maxDeletes {
						return nil // this cut goes on in the next commit
					}
					if err := c.Delete(); err != nil {
						return err
					}
					n++
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("store: delete evidence of %s before %d: %w", cuts[min(next, len(cuts)-1)].Key, cuts[min(next, len(cuts)-1)].Before, err)
		}
		total += n
		i = next
	}
	return total, nil
}

// PutPolicy stores a policy version.
func (s *Bolt) PutPolicy(p *Policy) error {
	s.activeMu.Lock()
	defer s.activeMu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		gb, err := tx.Bucket(bPolicies).CreateBucketIfNotExists([]byte(p.Group))
		if err != nil {
			return err
		}
		if p.Status == "active" {
			if cur := tx.Bucket(bActive).Get([]byte(p.Group)); cur != nil {
				if v := gb.Get(cur); v != nil {
					var old Policy
					if err := json.Unmarshal(v, &old); err == nil && old.Digest != p.Digest {
						old.Status = "superseded"
						ov, _ := json.Marshal(old)
						if err := gb.Put(cur, ov); err != nil {
							return err
						}
					}
				}
			}
		}
		v, err := json.Marshal(p)
		if err != nil {
			return err
		}
		key := []byte(p.Digest)
		if p.Status == "rejected" {
			key = []byte("rejected/" + p.Digest + "/" + p.Activated.Format(time.RFC3339Nano))
		}
		if err := gb.Put(key, v); err != nil {
			return err
		}
		if p.Status == "active" {
			return tx.Bucket(bActive).Put([]byte(p.Group), []byte(p.Digest))
		}
		return nil
	})
	if err == nil && p.Status == "active" {
		s.active[p.Group] = p.Digest
	}
	return err
}

// ActivePolicy returns the group's active policy.
func (s *Bolt) ActivePolicy(group string) (*Policy, error) {
	var p *Policy
	err := s.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bActive).Get([]byte(group))
		if cur == nil {
			return ErrNotFound
		}
		gb := tx.Bucket(bPolicies).Bucket([]byte(group))
		if gb == nil {
			return ErrNotFound
		}
		v := gb.Get(cur)
		if v == nil {
			return ErrNotFound
		}
		p = new(Policy)
		return json.Unmarshal(v, p)
	})
	return p, err
}

// ActiveDigest returns the digest of the group's active policy without
// reading the policy itself (the hub checks it on every quote).
func (s *Bolt) ActiveDigest(group string) (string, error) {
	s.activeMu.Lock()
	defer s.activeMu.Unlock()
	if d, ok := s.active[group]; ok {
		return d, nil
	}
	var d string
	err := s.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bActive).Get([]byte(group))
		if cur == nil {
			return ErrNotFound
		}
		d = string(cur)
		return nil
	})
	if err == nil {
		s.active[group] = d
	}
	return d, err
}

// Policies lists a group's policy versions ("" for all groups).
func (s *Bolt) Policies(group string) ([]Policy, error) {
	var out []Policy
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bPolicies).ForEach(func(g, _ []byte) error {
			if group != "" && string(g) != group {
				return nil
			}
			return tx.Bucket(bPolicies).Bucket(g).ForEach(func(_, v []byte) error {
				var p Policy
				if err := json.Unmarshal(v, &p); err != nil {
					return err
				}
				out = append(out, p)
				return nil
			})
		})
	})
	return out, err
}

// PutKV stores a hub-wide value.
func (s *Bolt) PutKV(key string, value []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bKV).Put([]byte(key), value) })
}

// GetKV reads a hub-wide value.
func (s *Bolt) GetKV(key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bKV).Get([]byte(key))
		if v == nil {
			return ErrNotFound
		}
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}
