package quote_test

import (
	"crypto/x509"
	"fmt"
	"os"

	"github.com/ratatouille/rat/evidence/quote"
)

// Verify a real TPM quote (made by the reference TPM simulator) of PCRs
// 0-10 in the sha256 bank against the AK and the verifier's nonce.
func ExampleVerify() {
	read := func(n string) []byte { b, _ := os.ReadFile("testdata/ecc." + n); return b }
	ak, err := x509.ParsePKIXPublicKey(read("ak.der"))
	if err != nil {
		fmt.Println(err)
		return
	}
	raw := read("pcrs")
	pcrs := map[int][]byte{}
	for i := 0; i <= 10; i++ {
		pcrs[i] = raw[i*32 : (i+1)*32]
	}
	res, err := quote.Verify(ak, read("attest"), read("sig"), quote.PCRValues{quote.AlgSHA256: pcrs},
		quote.WithNonce([]byte("fixture nonce")), quote.WithRequiredPCRs(quote.AlgSHA256, 7, 10))
	if err != nil {
		fmt.Println("rejected:", err)
		return
	}
	fmt.Println("verified; PCRs", res.Attest.PCRSelections[0].PCRs)
	// Output: verified; PCRs [0 1 2 3 4 5 6 7 8 9 10]
}
