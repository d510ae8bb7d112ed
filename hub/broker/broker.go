package broker

import (
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ratatouille/rat/evidence/protocol"
)

// HubUser is the username of the hub's own client.
const HubUser = "rat-hub"

// Config configures the broker.
type Config struct {
	// Addr is the listen address (host:port; port 0 picks a free one).
	Addr string
	// TLSAddr and TLS, when set, add a TLS listener for devices; with
	// ClientAuth set to require certificates, usernames are bound to the
	// certificates' common names. The plain listener on Addr then admits
	// only the hub's own client (keep it on loopback).
	TLSAddr string
	TLS     *tls.Config
	// Fleet is the only fleet whose topics devices may use.
	Fleet string
	// HubSecret is the password of a hub client connecting over TCP; empty
	// refuses every client naming itself the hub (the hub in this process
	// uses the inline client: Subscribe and Publish).
	HubSecret string
	Log       *slog.Logger
	// OnDenied is called for each refused connect, publish or subscribe.
	OnDenied func(user, topic, why string)
}

// Broker is a running embedded broker.
type Broker struct {
	srv *mqtt.Server
	l   *listeners.TCP
	tl  *listeners.TCP
	acl *acl
}

// Start starts the broker.
func Start(cfg Config) (*Broker, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// The inline client is the hub in this process (Subscribe, Publish):
	// no MQTT encode/decode and no loopback TCP hop per message.
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: log})
	// Bound packets a little above the protocol's message bound.
	srv.Options.Capabilities.MaximumPacketSize = protocol.MaxMessage + 4096
	a := &acl{cfg: cfg}
	if err := srv.AddHook(a, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "rat", Address: cfg.Addr})
	if err := srv.AddListener(l); err != nil {
		return nil, fmt.Errorf("broker: listen %s: %w", cfg.Addr, err)
	}
	var tl *listeners.TCP
	if cfg.TLS != nil {
		tl = listeners.NewTCP(listeners.Config{ID: "rat-tls", Address: cfg.TLSAddr, TLSConfig: cfg.TLS})
		if err := srv.AddListener(tl); err != nil {
			return nil, fmt.Errorf("broker: listen %s: %w", cfg.TLSAddr, err)
		}
	}
	go func() {
		if err := srv.Serve(); err != nil {
			log.Error("broker stopped", "err", err)
		}
	}()
	return &Broker{srv: srv, l: l, tl: tl, acl: a}, nil
}

// Addr is the address of the plain listener.
func (b *Broker) Addr() string { return b.l.Address() }

// TLSAddr is the address of the TLS listener ("" if none).
func (b *Broker) TLSAddr() string {
	if b.tl == nil {
		return ""
	}
	return b.tl.Address()
}

// Close stops the broker.
func (b *Broker) Close() error { return b.srv.Close() }

// Subscribe hands every message published on filter to fn, through the
// broker's inline client (the hub in this process). fn runs in the
// publishing client's connection goroutine, after the broker has
// acknowledged the PUBLISH, so the messages of one client reach fn one at a
// time and in their order; fn must copy payload to keep it.
func (b *Broker) Subscribe(filter string, fn func(topic string, payload []byte)) error {
	if err := b.srv.Subscribe(filter, 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, pk.Payload)
	}); err != nil {
		return fmt.Errorf("broker: subscribe %s: %w", filter, err)
	}
	return nil
}

// Intercept hands every message a device publishes, once the ACL has let
// it through, to fn instead of to the broker's subscribers: fn runs in the
// device's connection goroutine, so a device's messages reach it one at a
// time and in their order, and must copy payload to keep it. A device may
// publish only on its own evidence topics of the hub's fleet, which only
// the hub reads, so routing them through the topic index (a walk and a set
// of maps per message) found the hub every time; with Intercept set, a
// network client subscribed to device topics (one logged in as the hub)
// gets none. Messages before the first call are routed as usual.
func (b *Broker) Intercept(fn func(topic string, payload []byte)) {
	b.acl.intercept.Store(&fn)
}

// Publish sends payload on topic as the hub (the inline client, which the
// ACL does not restrict), not retained, at qos (0 or 1; a subscriber gets
// the lower of it and its own).
func (b *Broker) Publish(topic string, payload []byte, qos byte) error {
	if err := b.srv.Publish(topic, payload, false, qos); err != nil {
		return fmt.Errorf("broker: publish %s: %w", topic, err)
	}
	return nil
}

type acl struct {
	mqtt.HookBase
	cfg       Config
	intercept atomic.Pointer[func(topic string, payload []byte)]
}

func (a *acl) ID() string { return "rat-acl" }

func (a *acl) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnPublish
}

// OnPublish runs after the ACL check of a client's PUBLISH: a device's is
// handed to the Intercept function and not routed further
// (CodeSuccessIgnore: the broker still acknowledges it at its QoS).
func (a *acl) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	fn := a.intercept.Load()
	if fn == nil || cl.Net.Inline || string(cl.Properties.Username) == HubUser {
		return pk, nil
	}
	(*fn)(pk.TopicName, pk.Payload)
	return pk, packets.CodeSuccessIgnore
}

func (a *acl) denied(user, topic, why string) {
	if a.cfg.OnDenied != nil {
		a.cfg.OnDenied(user, topic, why)
	}
}

func (a *acl) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	if pk.Connect.ClientIdentifier == mqtt.InlineClientId {
		// It would take over the session of the hub's inline client.
		a.denied(user, "", "client id is reserved for the hub")
		return false
	}
	if user == HubUser {
		ok := a.cfg.HubSecret != "" && subtle.ConstantTimeCompare(pk.Connect.Password, []byte(a.cfg.HubSecret)) == 1
		if !ok {
			a.denied(user, "", "wrong hub secret")
		}
		return ok
	}
	if a.cfg.TLS != nil && cl.Net.Listener != "rat-tls" {
		a.denied(user, "", "devices must use the TLS listener")
		return false
	}
	if err := protocol.ValidID(user); err != nil {
		a.denied(user, "", "username is not a device id")
		return false
	}
	if pk.Connect.ClientIdentifier != user {
		a.denied(user, "", "client id must equal the username")
		return false
	}
	if a.cfg.TLS != nil && a.cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert {
		cn, ok := peerCN(cl)
		if !ok || cn != user {
			a.denied(user, "", "username does not match the client certificate")
			return false
		}
	}
	return true
}

func peerCN(cl *mqtt.Client) (string, bool) {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return "", false
	}
	st := tc.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return "", false
	}
	return st.PeerCertificates[0].Subject.CommonName, true
}

func (a *acl) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	user := string(cl.Properties.Username)
	if user == HubUser {
		return true
	}
	ok := Allowed(a.cfg.Fleet, user, topic, write)
	if !ok {
		a.denied(user, topic, map[bool]string{true: "publish outside the device's topics", false: "subscribe outside the device's topics"}[write])
	}
	return ok
}

// Allowed is the device ACL: publish to rat/v1/dt/<fleet>/<user>/<kind>,
// subscribe to rat/v1/cmd/<fleet>/<user>/<kind or +>.
func Allowed(fleet, user, topic string, write bool) bool {
	parts := strings.Split(topic, "/")
	if len(parts) != 6 || parts[0]+"/"+parts[1] != protocol.Prefix || parts[3] != fleet || parts[4] != user {
		return false
	}
	kind := parts[5]
	if kind == "" || kind == "#" || strings.ContainsAny(kind, "#") {
		return false
	}
	if write {
		return parts[2] == "dt" && kind != "+"
	}
	return parts[2] == "cmd"
}
