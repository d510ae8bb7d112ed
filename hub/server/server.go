package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ratatouille/rat/evidence/failure"
	"github.com/ratatouille/rat/evidence/ima"
	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/evidence/runtimepolicy"
	"github.com/ratatouille/rat/hub/broker"
	"github.com/ratatouille/rat/hub/export"
	"github.com/ratatouille/rat/hub/revoke"
	"github.com/ratatouille/rat/hub/store"
	"github.com/ratatouille/rat/hub/verifier"
)

// Config configures a Server.
type Config struct {
	Store    store.Store
	Verifier verifier.Config
	Fleet    string
	// MQTT is an external broker URL (tcp://host:port). Empty: start the
	// embedded broker on EmbeddedAddr.
	MQTT         string
	MQTTUser     string
	MQTTPassword string
	EmbeddedAddr string
	// EmbeddedTLSAddr and EmbeddedTLS add a TLS listener for devices to the
	// embedded broker (the plain one then serves only the hub itself).
	EmbeddedTLSAddr string
	EmbeddedTLS     *tls.Config
	// StaleAfter marks a TRUSTED device STALE when no evidence verified for
	// this long (default 30 s: three default heartbeats).
	StaleAfter time.Duration
	Actions    []revoke.Action
	// OnUntrusted is called (after the state is stored) for each device
	// that turns UNTRUSTED, e.g. to revoke its tokens.
	OnUntrusted func(key string)
	// OnToken answers a device's request for an attestation-result token
	// for itself (topic kind "token"); nil refuses such requests.
	OnToken func(key string, req *protocol.TokenRequest) *protocol.TokenResponse
	// PolicyCheck verifies a policy's signature before it is activated; nil
	// with AllowUnsignedPoliciesUnsafe accepts unsigned policies.
	PolicyCheck                 func(group string, doc, bundle []byte) (*PolicyMeta, error)
	AllowUnsignedPoliciesUnsafe bool
	// ReleaseWindow bounds how long a device updated without a reboot is
	// judged by the union of its old and new release's policies (0:
	// rollout.DefaultUnionWindow). Only groups with releases use it.
	ReleaseWindow time.Duration
	// ReleaseWaitStale makes STALE devices hold back the hub's automatic
	// rolling-out → complete until they report the release (false: only
	// devices that attest count; hub/server autorollout.go).
	ReleaseWaitStale bool
	// EvidenceRetention, when positive, makes the hub delete evidence
	// records it stored longer ago than this every hour, except those
	// of each device's current boot (retention.go). Zero keeps every
	// record: the store then grows by every accepted record, ≈ 1 KB each.
	EvidenceRetention time.Duration
	// Key is the hub's signing key: it signs AK bindings at enrollment
	// and exported bundles.
	Key     *export.Key
	Workers int
	// DeviceCache is how many devices the hub keeps decoded in memory
	// (write-through; ≈ 8 KB each). 0: 100,000; negative: none.
	DeviceCache int
	Log         *slog.Logger
}

// PolicyMeta is what a signature check tells about a policy.
type PolicyMeta struct {
	Signer, Issuer string
	LogIndex       int64
	LogID          string
	Signed         time.Time
}

// Server is a running hub.
type Server struct {
	cfg       Config
	log       *slog.Logger
	st        store.Store
	v         *verifier.Verifier
	broker    *broker.Broker
	link      link // to the broker: inline (embedded) or an MQTT client (external)
	stale     *staleIndex
	devs      *deviceCache
	runner    *revoke.Runner
	queues    []chan msg
	wg        sync.WaitGroup
	cancel    context.CancelFunc
	ctx       context.Context
	groupMu   sync.Mutex
	policies  map[string]*cachedPolicy
	relMu     sync.Mutex
	rel       releases
	Metrics   Metrics
	brokerURL string
	deviceURL string
	qmu       sync.RWMutex
	closed    bool
}

type cachedPolicy struct {
	p      *runtimepolicy.Policy
	digest string
}

type msg struct {
	fleet, device, kind string
	payload             []byte
	fn                  func() // work to run in the device's order instead
}

// Metrics are the hub's counters (exposed at /metrics by hub/api).
type Metrics struct {
	Messages, Rejected, Verified, Untrusted, Duplicates, Malformed, Denied atomic.Uint64
	// Pruned counts evidence records the retention deleted.
	Pruned atomic.Uint64
}

// Start starts the hub.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("server: a store is required")
	}
	if cfg.Fleet == "" {
		cfg.Fleet = "default"
	}
	if err := protocol.ValidID(cfg.Fleet); err != nil {
		return nil, fmt.Errorf("server: fleet: %w", err)
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 30 * time.Second
	}
	if cfg.Workers <= 0 {
		// A worker spends most of a record blocked in the store's group
		// commit (an fsync, 10-25 ms on ordinary disks), and only the
		// records of concurrent workers share a commit: with 4 per CPU
		// the hub was bound to ~8 records per fsync, a few hundred per
		// second, with the CPUs mostly idle.
		cfg.Workers = max(256, 4*runtime.NumCPU())
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Server{cfg: cfg, log: cfg.Log, st: cfg.Store, cancel: cancel, ctx: ctx, policies: map[string]*cachedPolicy{}, stale: newStaleIndex(cfg.StaleAfter)}
	if cfg.DeviceCache == 0 {
		cfg.DeviceCache = defaultDeviceCache
	}
	s.devs = newDeviceCache(cfg.DeviceCache) // negative: off
	vc := cfg.Verifier
	vc.Policies = s.policyFor
	vc.Releases = s.releaseVerdict
	if cfg.Key != nil && vc.Bind == nil {
		hub := "rat-hub/" + cfg.Fleet
		vc.Bind = func(device string, ak, ek []byte, t time.Time) ([]byte, error) {
			return cfg.Key.Bind(hub, device, ak, ek, t)
		}
	}
	if len(vc.NonceKey) == 0 {
		k, err := nonceKey(cfg.Store)
		if err != nil {
			cancel()
			return nil, err
		}
		vc.NonceKey = k
	}
	s.v = verifier.New(vc)
	s.runner = &revoke.Runner{Actions: append([]revoke.Action{&revoke.Func{N: "mqtt command", F: s.commandDevice}}, cfg.Actions...), Audit: s.auditAction}

	if cfg.MQTT == "" {
		addr := cfg.EmbeddedAddr
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		// No HubSecret: the hub is the broker's inline client, so no
		// network client can log in as the hub.
		b, err := broker.Start(broker.Config{Addr: addr, TLSAddr: cfg.EmbeddedTLSAddr, TLS: cfg.EmbeddedTLS, Fleet: cfg.Fleet, Log: cfg.Log.With("component", "broker"),
			OnDenied: func(u, t, why string) {
				s.Metrics.Denied.Add(1)
				s.log.Warn("broker refused", "user", u, "topic", t, "why", why)
			}})
		if err != nil {
			cancel()
			return nil, err
		}
		s.broker = b
		s.brokerURL = "tcp://" + b.Addr()
	} else {
		s.brokerURL = cfg.MQTT
	}
	if s.broker != nil && s.broker.TLSAddr() != "" {
		s.deviceURL = "ssl://" + s.broker.TLSAddr()
	} else {
		s.deviceURL = s.brokerURL
	}
	for i := 0; i < cfg.Workers; i++ {
		q := make(chan msg, 256)
		s.queues = append(s.queues, q)
		s.wg.Add(1)
		go s.worker(q)
	}
	// The staleness index starts from the store, before any worker can
	// write a device.
	devs, err := s.briefs()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("server: list devices: %w", err)
	}
	for _, d := range devs {
		s.stale.note(d.Key, d.ID, d.State, d.LastVerified)
	}
	if err := s.buildTally(devs); err != nil { // autorollout.go
		s.Close()
		return nil, err
	}
	sub := protocol.Prefix + "/dt/" + cfg.Fleet + "/+/+"
	// The link is set before the first message can arrive: a worker may
	// answer it at once.
	if s.broker != nil {
		s.link = wrapLink(inlineLink{s.broker})
		// Device messages come straight from the broker's ACL hook (the
		// topic index would only ever find the hub for them).
		s.broker.Intercept(s.onMessage)
	} else {
		l := newPahoLink(cfg, sub, s.onMessage, s.log)
		s.link = wrapLink(l)
		if err := l.connect(); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.wg.Add(1)
	go s.staleLoop()
	if cfg.EvidenceRetention > 0 {
		s.wg.Add(1)
		go s.retentionLoop()
	}
	return s, nil
}

// testHookLink, set by tests before Start, wraps the hub's broker link (to
// lose replies in transit).
var testHookLink func(link) link

func wrapLink(l link) link {
	if testHookLink != nil {
		return testHookLink(l)
	}
	return l
}

// BrokerURL is the broker devices should use (the embedded one's address;
// its TLS listener when it has one).
func (s *Server) BrokerURL() string { return s.deviceURL }

// Close stops the hub.
func (s *Server) Close() error {
	s.cancel()
	if s.link != nil {
		s.link.close()
	}
	s.qmu.Lock()
	s.closed = true
	for _, q := range s.queues {
		close(q)
	}
	s.qmu.Unlock()
	s.wg.Wait()
	s.runner.Wait()
	if s.broker != nil {
		return s.broker.Close()
	}
	return nil
}

// onMessage takes a device's message from the broker (one device's
// messages arrive one at a time, in order).
func (s *Server) onMessage(topic string, payload []byte) {
	s.Metrics.Messages.Add(1)
	fleet, device, kind, err := protocol.ParseUpTopic(topic)
	if err != nil || fleet != s.cfg.Fleet {
		s.Metrics.Malformed.Add(1)
		return
	}
	s.enqueue(msg{fleet: fleet, device: device, kind: kind, payload: append([]byte(nil), payload...)})
}

// enqueue hands m to its device's worker; messages of one device always go
// to the same worker, so they are processed in arrival order.
func (s *Server) enqueue(m msg) {
	s.qmu.RLock()
	defer s.qmu.RUnlock()
	if s.closed {
		return
	}
	h := fnv.New32a()
	h.Write([]byte(m.device))
	q := s.queues[int(h.Sum32())%len(s.queues)]
	select {
	case q <- m:
	case <-s.ctx.Done():
	}
}

func (s *Server) worker(q chan msg) {
	defer s.wg.Done()
	for m := range q {
		if m.fn != nil {
			m.fn()
			continue
		}
		s.handle(m)
	}
}

// replyQoS is the MQTT QoS of a reply of this kind. Acks go at QoS 0: an
// ack only tells the agent what the hub has already made durable, and an
// agent that misses one loses nothing, because it keeps every record in its
// outbox until an ack covers it and republishes what is unacknowledged on
// reconnect or after 5 s without progress, and the hub answers a duplicate
// with the same ack. So QoS 1 would buy a retransmission the protocol
// already has, at the cost of the device's PUBACK and the broker's in-flight
// tracking on every record. Enrollment replies and commands stay QoS 1: an
// agent does not resend what they answer on its own schedule.
func replyQoS(kind string) byte {
	if kind == protocol.KindAck {
		return 0
	}
	return 1
}

func (s *Server) publish(fleet, device, kind string, m any) {
	b, err := protocol.Marshal(m)
	if err != nil {
		s.log.Error("encode reply", "err", err)
		return
	}
	if err := s.link.publish(protocol.DownTopic(fleet, device, kind), b, replyQoS(kind), false); err != nil {
		s.log.Warn("publish reply", "device", device, "kind", kind, "err", err)
	}
}

func (s *Server) handle(m msg) {
	key := verifier.Key(m.fleet, m.device)
	d, err := s.device(key)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("store read", "device", key, "err", err)
		return
	}
	if errors.Is(err, store.ErrNotFound) {
		d = nil
	}
	var out verifier.Outcome
	malformed := func(err error) {
		s.Metrics.Malformed.Add(1)
		s.log.Warn("malformed message", "device", key, "kind", m.kind, "err", err)
		if d != nil {
			e := failure.Event{ID: failure.EvidenceMalformed, Severity: failure.Critical, Context: fmt.Sprintf("%s message: %v", m.kind, err)}
			if errors.Is(err, protocol.ErrTooLarge) {
				e.ID = failure.EvidenceOversize
			}
			_ = s.st.AppendEvents(key, []store.Event{{Time: time.Now().UTC(), Kind: "rejected", Detail: "message refused", Event: &e}})
		}
	}
	switch m.kind {
	case protocol.KindEnroll:
		var e protocol.Enroll
		if err := protocol.Unmarshal(m.payload, &e); err != nil {
			malformed(err)
			return
		}
		out = s.v.Enroll(d, m.fleet, m.device, &e)
	case protocol.KindActivate:
		var a protocol.Activate
		if err := protocol.Unmarshal(m.payload, &a); err != nil {
			malformed(err)
			return
		}
		out = s.v.Activate(d, m.fleet, m.device, &a)
	case protocol.KindEvidence:
		if d == nil {
			s.Metrics.Rejected.Add(1)
			return
		}
		var e protocol.Evidence
		if err := protocol.Unmarshal(m.payload, &e); err != nil {
			malformed(err)
			return
		}
		out = s.v.Evidence(d, m.payload, &e, func(seq uint64) ([]byte, error) { return s.st.EvidenceRecord(key, seq) })
	case protocol.KindToken:
		var tr protocol.TokenRequest
		if err := protocol.Unmarshal(m.payload, &tr); err != nil {
			malformed(err)
			return
		}
		resp := &protocol.TokenResponse{Reason: "this hub issues no tokens"}
		if d == nil {
			resp.Reason = "unknown device"
		} else if s.cfg.OnToken != nil {
			resp = s.cfg.OnToken(key, &tr)
		}
		s.publish(m.fleet, m.device, protocol.KindTokenResp, resp)
		return
	default:
		malformed(fmt.Errorf("unknown message kind %q", m.kind))
		return
	}
	if out.Device == nil && len(out.Events) > 0 {
		if d != nil {
			_ = s.st.AppendEvents(key, out.Events)
		} else {
			for _, e := range out.Events {
				s.log.Warn("refused", "device", key, "detail", e.Detail, "event", e.Event)
			}
		}
	}
	if out.Baseline != nil {
		if err := s.storeBaseline(out.Device.Group, out.Baseline); err != nil {
			s.log.Error("baseline policy", "group", out.Device.Group, "err", err)
		} else if p, _ := s.st.ActivePolicy(out.Device.Group); p != nil {
			out.Device.PolicyDigest = p.Digest
		}
	}
	if out.Device != nil {
		// Persist before anything is acknowledged: an ack means the hub
		// will never need the record again.
		// The verifier's new device is only read from here on.
		if err := s.saveOwned(out.Device, out.Events, out.Seq, out.Raw, true); err != nil {
			s.log.Error("store write; not acknowledging", "device", key, "err", err)
			return
		}
	}
	for _, e := range out.Events {
		switch e.Kind {
		case "rejected":
			s.Metrics.Rejected.Add(1)
			s.log.Warn("evidence refused", "device", key, "seq", e.Seq, "event", e.Event.String())
		case "failure":
			s.log.Warn("attestation failure", "device", key, "seq", e.Seq, "event", e.Event.String())
		case "state", "enrolled":
			s.log.Info(e.Detail, "device", key)
		}
	}
	if m.kind == protocol.KindEvidence {
		if a, ok := out.Reply.(*protocol.Ack); ok && !a.Rejected {
			s.Metrics.Verified.Add(1)
		}
		if d != nil && out.Device == nil {
			s.Metrics.Duplicates.Add(1)
		}
	}
	if out.Reply != nil {
		s.publish(m.fleet, m.device, out.ReplyKind, out.Reply)
	}
	if out.Became == store.Untrusted {
		s.Metrics.Untrusted.Add(1)
		s.fireUntrusted(out.Device)
	}
}

func (s *Server) fireUntrusted(d *store.Device) {
	if s.cfg.OnUntrusted != nil {
		s.cfg.OnUntrusted(d.Key)
	}
	s.runner.Fire(s.ctx, revoke.Event{Device: d.ID, Fleet: d.Fleet, Group: d.Group, State: d.State, Reason: d.Reason, Time: time.Now().UTC()})
}

func (s *Server) commandDevice(_ context.Context, e revoke.Event) error {
	b, err := protocol.Marshal(&protocol.Command{Action: "revoke", Reason: e.Reason})
	if err != nil {
		return err
	}
	return s.link.publish(protocol.DownTopic(e.Fleet, e.Device, protocol.KindCommand), b, 1, true)
}

func (s *Server) auditAction(e revoke.Event, action string, attempt int, err error) {
	detail := fmt.Sprintf("revocation action %q attempt %d: ok", action, attempt)
	if err != nil {
		detail = fmt.Sprintf("revocation action %q attempt %d failed: %v", action, attempt, err)
	}
	_ = s.st.AppendEvents(verifier.Key(e.Fleet, e.Device), []store.Event{{Time: time.Now().UTC(), Kind: "action", Detail: detail}})
}

func (s *Server) staleLoop() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		for _, d := range s.stale.expired(time.Now()) {
			// Go through the device's worker so this cannot race its evidence.
			key := d.key
			s.enqueueFunc(d.id, func() { s.markStale(key) })
		}
	}
}

// save stores a device update and keeps the staleness index and the device
// cache current. Every device write of the hub goes through it, in the
// device's worker.
func (s *Server) save(d *store.Device, events []store.Event, seq uint64, raw []byte) error {
	return s.saveOwned(d, events, seq, raw, false)
}

// saveOwned is save for a caller that gives d up (changes it no more), so
// the cache can keep d itself instead of a copy.
func (s *Server) saveOwned(d *store.Device, events []store.Event, seq uint64, raw []byte, owned bool) error {
	if err := s.st.Save(d, events, seq, raw); err != nil {
		s.devs.drop(d.Key)
		return err
	}
	if !owned {
		d = cloneDevice(d)
	}
	s.devs.put(d)
	s.stale.note(d.Key, d.ID, d.State, d.LastVerified)
	s.noteRollout(d) // autorollout.go: the automatic release transitions
	return nil
}

// device reads a device for its worker: from the cache of what the hub
// last stored, else from the store. The caller may change the copy it gets.
func (s *Server) device(key string) (*store.Device, error) {
	if d := s.devs.get(key); d != nil {
		return d, nil
	}
	d, err := s.st.Device(key)
	if err != nil {
		return nil, err
	}
	s.devs.put(cloneDevice(d))
	return d, nil
}

// briefs lists the devices for the staleness index and the rollout tally
// at start, decoding only the fields they need when the store can
// (store.Bolt.Briefs).
func (s *Server) briefs() ([]store.DeviceBrief, error) {
	if b, ok := s.st.(interface {
		Briefs() ([]store.DeviceBrief, error)
	}); ok {
		return b.Briefs()
	}
	devs, err := s.st.Devices()
	out := make([]store.DeviceBrief, len(devs))
	for i, d := range devs {
		out[i] = store.DeviceBrief{Key: d.Key, ID: d.ID, State: d.State, LastVerified: d.LastVerified, Group: d.Group, Release: d.Release}
	}
	return out, err
}

// enqueueFunc runs f on the device's worker.
func (s *Server) enqueueFunc(device string, f func()) {
	s.enqueue(msg{device: device, fn: f})
}

func (s *Server) markStale(key string) {
	d, err := s.st.Device(key)
	if err != nil || d.State != store.Trusted {
		return
	}
	if time.Since(d.LastVerified) <= s.cfg.StaleAfter {
		s.stale.note(d.Key, d.ID, d.State, d.LastVerified) // not yet: queue it again
		return
	}
	d.State, d.Reason = store.Stale, fmt.Sprintf("no verified evidence since %s", d.LastVerified.Format(time.RFC3339))
	_ = s.save(d, []store.Event{{Time: time.Now().UTC(), Kind: "state", State: store.Stale, Detail: "TRUSTED → STALE: " + d.Reason}}, 0, nil)
	s.log.Warn("device is stale", "device", key)
}

// activeDigester is implemented by stores that can name a group's active
// policy without decoding it (store.Bolt).
type activeDigester interface {
	ActiveDigest(group string) (string, error)
}

// policyFor returns the group's active policy, parsed once per digest.
// It runs for every quoted record: when the store can tell the active
// digest alone, the cached parse is used without reading the policy
// document (decoding it was a fifth of the hub's CPU under load).
func (s *Server) policyFor(group string) (*runtimepolicy.Policy, string, error) {
	if ad, ok := s.st.(activeDigester); ok {
		dg, err := ad.ActiveDigest(group)
		if err != nil {
			return nil, "", fmt.Errorf("no active runtime policy: %w", err)
		}
		s.groupMu.Lock()
		c := s.policies[group]
		s.groupMu.Unlock()
		if c != nil && c.digest == dg {
			return c.p, c.digest, nil
		}
	}
	p, err := s.st.ActivePolicy(group)
	if err != nil {
		return nil, "", fmt.Errorf("no active runtime policy: %w", err)
	}
	s.groupMu.Lock()
	defer s.groupMu.Unlock()
	if c := s.policies[group]; c != nil && c.digest == p.Digest {
		return c.p, c.digest, nil
	}
	rp, err := runtimepolicy.Parse(p.JSON)
	if err != nil {
		return nil, "", fmt.Errorf("active policy %s: %w", p.Digest, err)
	}
	s.policies[group] = &cachedPolicy{p: rp, digest: p.Digest}
	return rp, p.Digest, nil
}

func (s *Server) storeBaseline(group string, p *runtimepolicy.Policy) error {
	if _, err := s.st.ActivePolicy(group); err == nil {
		return nil // the group already has a policy
	}
	doc, err := p.Marshal()
	if err != nil {
		return err
	}
	return s.st.PutPolicy(&store.Policy{Group: group, Name: "Baseline::" + group, Digest: verifier.PolicyDigest(doc), JSON: doc,
		Source: "baseline", Status: "active", Activated: time.Now().UTC()})
}

// ErrUnsigned is returned for a policy without a valid signature.
var ErrUnsigned = errors.New("server: policy is not signed by an allowed identity")

// SetPolicy validates, verifies and activates a group's runtime policy, then
// re-judges the group's devices by it. A policy that fails validation or
// signature checks is recorded as rejected and changes nothing.
func (s *Server) SetPolicy(group string, doc, bundle []byte, source, commit string) (*store.Policy, error) {
	if err := protocol.ValidID(group); err != nil {
		return nil, fmt.Errorf("server: group: %w", err)
	}
	now := time.Now().UTC()
	rec := &store.Policy{Group: group, Name: group, Digest: verifier.PolicyDigest(doc), JSON: doc, Bundle: bundle, Source: source, Commit: commit, Activated: now}
	reject := func(err error) (*store.Policy, error) {
		rec.Status, rec.Why = "rejected", err.Error()
		_ = s.st.PutPolicy(rec)
		return rec, err
	}
	rp, err := runtimepolicy.Parse(doc)
	if err != nil {
		return reject(err)
	}
	switch {
	case s.cfg.PolicyCheck != nil:
		meta, err := s.cfg.PolicyCheck(group, doc, bundle)
		if err != nil {
			return reject(fmt.Errorf("%w: %v", ErrUnsigned, err))
		}
		rec.Signer, rec.Issuer, rec.LogIndex, rec.LogID, rec.Signed = meta.Signer, meta.Issuer, meta.LogIndex, meta.LogID, meta.Signed
	case !s.cfg.AllowUnsignedPoliciesUnsafe:
		return reject(fmt.Errorf("%w: no signature check configured", ErrUnsigned))
	}
	if cur, err := s.st.ActivePolicy(group); err == nil && cur.Digest == rec.Digest {
		return cur, nil // idempotent
	}
	rec.Status = "active"
	if err := s.st.PutPolicy(rec); err != nil {
		return nil, err
	}
	s.log.Info("policy activated", "group", group, "digest", rec.Digest, "source", source)
	devs, err := s.st.Devices()
	if err != nil {
		return rec, err
	}
	var wg sync.WaitGroup
	for _, d := range devs {
		if d.Group != group || d.State == store.Decommissioned {
			continue
		}
		wg.Add(1)
		key, id := d.Key, d.ID
		s.enqueueFunc(id, func() {
			defer wg.Done()
			s.rejudge(key, rp, rec.Digest, "policy "+rec.Digest[:12]+" activated")
		})
	}
	wg.Wait()
	return rec, nil
}

// Clear is an operator's decision to re-judge an UNTRUSTED device by its
// group's current policy (failures that are not about the runtime policy,
// such as a bad quote signature, are cleared too: the operator says so).
func (s *Server) Clear(key string) error {
	d, err := s.st.Device(key)
	if err != nil {
		return err
	}
	rp, digest, err := s.policyFor(d.Group)
	if err != nil && !s.hasReleases(d.Group) {
		return err
	}
	done := make(chan struct{})
	s.enqueueFunc(d.ID, func() {
		defer close(done)
		s.rejudgeForce(key, rp, digest, "cleared by an operator", true)
	})
	<-done
	return nil
}

// Decommission retires a device: its messages are refused from now on, its
// tokens are revoked, and its history and evidence stay for export. It is
// final: a decommissioned EK cannot enroll again under the same id.
func (s *Server) Decommission(key, why string) error {
	d, err := s.st.Device(key)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	s.enqueueFunc(d.ID, func() {
		d, err := s.st.Device(key)
		if err != nil {
			done <- err
			return
		}
		prev := d.State
		d.State, d.Reason = store.Decommissioned, why
		err = s.save(d, []store.Event{{Time: time.Now().UTC(), Kind: "state", State: d.State, Detail: prev + " → DECOMMISSIONED: " + why}}, 0, nil)
		if err == nil && s.cfg.OnUntrusted != nil {
			s.cfg.OnUntrusted(key) // revoke its tokens
		}
		done <- err
	})
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		return errors.New("server: decommission timed out")
	}
}

func (s *Server) rejudge(key string, rp *runtimepolicy.Policy, digest, why string) {
	s.rejudgeForce(key, rp, digest, why, false)
}

// policyOnly reports whether every failure is a runtime-policy verdict that
// a new policy may overturn.
func policyOnly(fs []failure.Event) bool {
	for _, f := range fs {
		if !strings.HasPrefix(f.ID, "ima.validation.") && !strings.HasPrefix(f.ID, "ota.release.") && f.ID != failure.RuntimePolicyMissing {
			return false
		}
	}
	return true
}

func (s *Server) rejudgeForce(key string, rp *runtimepolicy.Policy, digest, why string, force bool) {
	d, err := s.st.Device(key)
	if err != nil {
		return
	}
	if vd, ok := s.releaseFor(d); ok {
		// A group with releases judges each device by its release's policy.
		if vd.Event != nil {
			s.untrustedByRelease(d, *vd.Event, why)
			return
		}
		rp, digest = vd.Policy, vd.Digest
	}
	if rp == nil {
		return
	}
	entries, pcrs, err := s.bootEntries(d)
	if err != nil {
		s.log.Error("re-judge: read stored evidence", "device", key, "err", err)
		return
	}
	fails := verifier.Reevaluate(rp, entries, pcrs)
	now := time.Now().UTC()
	var evs []store.Event
	prev := d.State
	d.UsePolicy(digest, d.NextSeq, now)
	switch {
	case len(fails) == 0 && d.State == store.Untrusted && (force || policyOnly(d.Failures)):
		d.State, d.Reason, d.Failures = store.Trusted, "", nil
		evs = append(evs, store.Event{Time: now, Kind: "state", State: d.State, Detail: "UNTRUSTED → TRUSTED: " + why})
	case len(fails) > 0 && d.State != store.Untrusted:
		d.State, d.Reason = store.Untrusted, fails[0].String()
		d.Failures = append(d.Failures, fails...)
		for i := range fails {
			evs = append(evs, store.Event{Time: now, Kind: "failure", Event: &fails[i], Detail: why})
		}
		evs = append(evs, store.Event{Time: now, Kind: "state", State: d.State, Detail: prev + " → UNTRUSTED: " + d.Reason})
	default:
		evs = append(evs, store.Event{Time: now, Kind: "policy", Detail: why + fmt.Sprintf(" (%d failing entries)", len(fails))})
	}
	if err := s.save(d, evs, 0, nil); err != nil {
		s.log.Error("re-judge: store", "device", key, "err", err)
		return
	}
	if prev != d.State {
		s.log.Info("device re-judged", "device", key, "state", d.State, "why", why)
		if d.State == store.Untrusted {
			s.fireUntrusted(d)
		}
	}
}

// bootEntries reads back the current boot's IMA entries and its latest
// quoted sha256 PCRs from the stored evidence records.
func (s *Server) bootEntries(d *store.Device) ([]ima.Entry, map[int][]byte, error) {
	var entries []ima.Entry
	var pcrs map[int][]byte
	err := s.st.Evidence(d.Key, d.BootStartSeq, d.NextSeq, func(seq uint64, raw []byte) error {
		var e protocol.Evidence
		if err := protocol.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("record %d: %w", seq, err)
		}
		if len(e.IMA) > 0 {
			es, err := ima.ParseBinary(bytes.NewReader(e.IMA))
			if err != nil {
				return fmt.Errorf("record %d: %w", seq, err)
			}
			if int(e.IMAStart) == len(entries) {
				entries = append(entries, es...)
			} else if int(e.IMAStart) < len(entries) {
				// A resent range after a resync: keep the first copy.
				if end := int(e.IMAStart) + len(es); end > len(entries) {
					entries = append(entries, es[len(entries)-int(e.IMAStart):]...)
				}
			}
		}
		if p := e.PCRs[0x000B]; p != nil && pcrs == nil {
			pcrs = p
		}
		return nil
	})
	if uint64(len(entries)) > d.IMACount {
		entries = entries[:d.IMACount]
	}
	return entries, pcrs, err
}

// DeviceSummary is one row of Devices.
type DeviceSummary struct {
	Key, ID, Group, State, Reason string
	LastVerified                  time.Time
}

// Store returns the hub's store (for the HTTP API and export).
func (s *Server) Store() store.Store { return s.st }

// SortedDevices lists devices sorted by key.
func (s *Server) SortedDevices() ([]store.Device, error) {
	ds, err := s.st.Devices()
	sort.Slice(ds, func(i, j int) bool { return ds[i].Key < ds[j].Key })
	return ds, err
}

// DeviceStates counts the devices in each state. It reads the store's
// briefs (≈ 100 bytes a device, kept with every save), not the records:
// /metrics asks on every scrape, and decoding 100,000 whole records took
// ≈ 1.5 s of CPU.
func (s *Server) DeviceStates() (map[string]int, error) {
	bs, err := s.briefs()
	if err != nil {
		return nil, err
	}
	n := map[string]int{}
	for _, b := range bs {
		n[b.State]++
	}
	return n, nil
}

// Fleet is the fleet this hub serves.
func (s *Server) Fleet() string { return s.cfg.Fleet }

// Key is the hub's signing key (nil if none was configured).
func (s *Server) Key() *export.Key { return s.cfg.Key }

// BootLog is the current boot's IMA measurement list of a device as the
// hub verified it (binary_runtime_measurements format), read back from the
// stored evidence: what `rat init-baseline --device` builds a policy from.
func (s *Server) BootLog(key string) ([]byte, error) {
	d, err := s.st.Device(key)
	if err != nil {
		return nil, err
	}
	entries, _, err := s.bootEntries(d)
	if err != nil {
		return nil, err
	}
	return ima.MarshalBinary(entries), nil
}

// nonceKeyName is the store key of the verifier's nonce key.
const nonceKeyName = "verifier/nonce-key"

// nonceKey returns the store's nonce key, made on first use: nonces are
// keyed (hub/verifier), and a hub that restarts on the same store must
// still accept the nonces it issued before. Anyone who can read the store
// can make nonces, as they could read the stored windows before.
func nonceKey(st store.Store) ([]byte, error) {
	k, err := st.GetKV(nonceKeyName)
	if err == nil && len(k) >= 32 {
		return k, nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("server: read the nonce key: %w", err)
	}
	k = make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("server: make the nonce key: %w", err)
	}
	if err := st.PutKV(nonceKeyName, k); err != nil {
		return nil, fmt.Errorf("server: store the nonce key: %w", err)
	}
	return k, nil
}
