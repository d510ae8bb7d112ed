package simbundle

import (
	"bytes"

	"github.com/veraison/go-cose"

	"github.com/ratatouille/rat/evidence/bundle"
	"github.com/ratatouille/rat/evidence/protocol"
)

// Encode writes a bundle from h, the policy and records (in the given
// order, so tests can drop, reorder or duplicate them), signed by the hub
// when signed is set.
func (f *Fixture) Encode(records []*protocol.Evidence, signed bool) ([]byte, error) {
	var buf bytes.Buffer
	var opts []bundle.EncodeOption
	if signed {
		s, err := cose.NewSigner(cose.AlgorithmES256, f.HubKey)
		if err != nil {
			return nil, err
		}
		opts = append(opts, bundle.WithSigner(s))
	}
	enc, err := bundle.NewEncoder(&buf, f.Header, opts...)
	if err != nil {
		return nil, err
	}
	if err := enc.WritePolicy(f.Policy); err != nil {
		return nil, err
	}
	for _, r := range records {
		if err := enc.WriteRecord(r); err != nil {
			return nil, err
		}
	}
	if err := enc.WriteVerdict(&bundle.Verdict{Value: []byte{0xa1, 0x01, 0x01}}); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
