package bundle_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/veraison/go-cose"

	"github.com/ratatouille/rat/evidence/bundle"
	"github.com/ratatouille/rat/evidence/claims"
	"github.com/ratatouille/rat/evidence/protocol"
)

// The hub's export (rat-hub export) and the agent's (rat-agent export)
// are the same loop: a header, then policies and records in the order
// they were applied and received, then Close. Records are the
// protocol.Evidence messages as stored; WriteEncodedRecord takes the
// stored bytes directly.
func Example() {
	hubKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, _ := cose.NewSigner(cose.AlgorithmES256, hubKey)
	ekPublic, akPublic := []byte("EK TPMT_PUBLIC bytes"), []byte("AK TPMT_PUBLIC bytes")

	// At enrollment, after ActivateCredential succeeded, the hub signs the
	// binding once and keeps it with the device.
	binding, _ := bundle.SignBinding(signer, &bundle.Binding{
		AKPublic: akPublic, EKPublic: ekPublic, Method: bundle.BindingMethod, Time: time.Now().Unix(), Hub: "hub-1", Device: "dev-1",
	})

	tok, _ := bundle.NewToken(claims.UEID(ekPublic), "hub-1", "dev-1", time.Now())
	var out bytes.Buffer // an *os.File in rat-hub export
	enc, _ := bundle.NewEncoder(&out, &bundle.Header{Token: tok, EKPublic: ekPublic, AKPublic: akPublic, Binding: binding}, bundle.WithSigner(signer))
	_ = enc.WritePolicy(&bundle.Policy{Name: "Baseline::lab", FromSeq: 1, Document: []byte(`{"meta":{"version":1}}`)})
	_ = enc.WriteRecord(&protocol.Evidence{Seq: 1, IMAStart: 0, IMA: []byte{}}) // stored records, in order
	if err := enc.Close(); err != nil {
		fmt.Println(err)
		return
	}

	d, _ := bundle.NewDecoder(&out)
	for {
		if _, err := d.Next(); errors.Is(err, io.EOF) {
			break
		}
	}
	fmt.Println(d.End().Summary.Records, "record,", d.End().Summary.Policies, "policy, signed:", bundle.VerifyEnd(d.End(), &hubKey.PublicKey) == nil)
	// Output: 1 record, 1 policy, signed: true
}
