package agent

import (
	"testing"

	"github.com/ratatouille/rat/evidence/protocol"
)

// TestPublishQoS pins which messages the agent sends at QoS 0: only
// evidence, whose delivery the hub's Ack confirms (hub/server's
// TestAgentLostAcks shows the agent republishes what no ack covers).
func TestPublishQoS(t *testing.T) {
	for _, tc := range []struct {
		kind string
		qos  byte
	}{
		{protocol.KindEvidence, 0},
		{protocol.KindEnroll, 1},
		{protocol.KindActivate, 1},
		{protocol.KindToken, 1},
	} {
		if got := publishQoS(tc.kind); got != tc.qos {
			t.Errorf("%s published at QoS %d, want %d", tc.kind, got, tc.qos)
		}
	}
}
