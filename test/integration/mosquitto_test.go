package integration

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/ratatouille/rat/test/harness"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mosquittoACL is the broker ACL docs/operator.md ("Mosquitto ACL")
// documents; TestOperatorDocHasACL keeps the two the same. The hub's user
// may read and write the whole protocol tree; every other user — a device,
// whose username is its device id — may only publish under its own id and
// only read its own command topics. %u is the authenticated username, so a
// device cannot name another device's topics at all.
const mosquittoACL = `user rat-hub
topic readwrite rat/v1/#

pattern write rat/v1/dt/+/%u/#
pattern read rat/v1/cmd/+/%u/#
`

// mosquittoSettings are the broker settings docs/operator.md documents next
// to the ACL (without the per-test paths and port).
//
//   - use_username_as_clientid: the client id is the authenticated
//     username, so a device cannot take over another client's session
//     (the hub's, or another device's) by connecting with its client id.
//   - max_packet_size: a bit above the protocol's 128 KiB message bound
//     (plus topic and header), so the hub sees, and records, a message over
//     the bound instead of the broker silently dropping it; larger packets
//     are refused by the broker.
//   - persistence: queued QoS 1 messages (and the hub's persistent session)
//     survive a broker restart; autosave_interval 1 narrows what a crash
//     loses (the agent's outbox republishes whatever is lost).
const mosquittoSettings = `allow_anonymous false
use_username_as_clientid true
max_packet_size 136000
persistence true
autosave_interval 1
`

// mosquitto is a real Mosquitto broker process with its own config,
// password file and ACL.
type mosquitto struct {
	bin   string
	dir   string
	port  int
	conf  string
	pass  map[string]string
	proc  *harness.Proc
	logTo string
}

// startMosquitto starts Mosquitto on a free loopback port with users
// rat-hub and each of devices, every one with its own random password.
func startMosquitto(t *testing.T, logDir string, devices ...string) *mosquitto {
	t.Helper()
	mbin := harness.RequireTool(t, "mosquitto")
	mpw := harness.RequireTool(t, "mosquitto_passwd")
	dir := t.TempDir()
	m := &mosquitto{bin: mbin, dir: dir, pass: map[string]string{}, logTo: logDir}
	pwFile := filepath.Join(dir, "passwd")
	for i, u := range append([]string{"rat-hub"}, devices...) {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		m.pass[u] = hex.EncodeToString(b)
		args := []string{"-b", pwFile, u, m.pass[u]}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command(mpw, args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd %s: %v\n%s", u, err, out)
		}
	}
	acl := filepath.Join(dir, "acl")
	if err := os.WriteFile(acl, []byte(mosquittoACL), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; attempt < 5; attempt++ {
		m.port = harness.FreePort(t)
		var conf strings.Builder
		fmt.Fprintf(&conf, "listener %d 127.0.0.1\n", m.port)
		conf.WriteString(mosquittoSettings)
		fmt.Fprintf(&conf, "password_file %s\nacl_file %s\npersistence_location %s/\n", pwFile, acl, filepath.Join(dir, "data"))
		conf.WriteString("log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
		if os.Geteuid() == 0 {
			// Run as root (CI containers), Mosquitto would drop to user
			// "mosquitto", which cannot read the test's private temp dir.
			conf.WriteString("user root\n")
		}
		m.conf = filepath.Join(dir, "mosquitto.conf")
		if err := os.WriteFile(m.conf, []byte(conf.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		if m.start(t) {
			return m
		}
		t.Logf("mosquitto on port %d did not come up; retrying\n%s", m.port, harness.Tail(filepath.Join(logDir, "mosquitto.log"), 10))
	}
	t.Fatal("could not start mosquitto")
	return nil
}

// start (re)starts the broker on its port with the same config and
// persistence directory.
func (m *mosquitto) start(t *testing.T) bool {
	t.Helper()
	m.proc = startBin(t, m.logTo, "mosquitto", nil, m.bin, "-c", m.conf)
	if !m.proc.WaitListening(m.addr(), 10*time.Second) {
		m.proc.Kill(t)
		return false
	}
	return true
}

// restart starts the broker again on the same port (after a kill or stop).
func (m *mosquitto) restart(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !m.start(t) {
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not restart on port %d", m.port)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (m *mosquitto) addr() string { return fmt.Sprintf("127.0.0.1:%d", m.port) }
func (m *mosquitto) url() string  { return "tcp://" + m.addr() }

// passwordFile writes user's password to a file for a --mqtt-password-file
// flag.
func (m *mosquitto) passwordFile(t *testing.T, user string) string {
	t.Helper()
	pw, ok := m.pass[user]
	if !ok {
		t.Fatalf("mosquitto has no user %q", user)
	}
	p := filepath.Join(m.dir, user+".password")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOperatorDocHasACL keeps docs/operator.md's Mosquitto ACL and settings
// the ones these tests run Mosquitto with.
func TestOperatorDocHasACL(t *testing.T) {
	b, err := os.ReadFile("../../docs/operator.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	if !strings.Contains(doc, "## Mosquitto ACL") {
		t.Error(`docs/operator.md has no "## Mosquitto ACL" section`)
	}
	for _, block := range []string{mosquittoACL, mosquittoSettings} {
		if !strings.Contains(doc, block) {
			t.Errorf("docs/operator.md lacks the tested block:\n%s", block)
		}
	}
}
