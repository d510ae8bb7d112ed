package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/ratatouille/rat/evidence/credential"
	"github.com/ratatouille/rat/evidence/quote"
)

// tpm2ToolsPCRs writes PCR values of the sha256 bank the way tpm2_quote -o
// does (little-endian in-memory TPML_PCR_SELECTION, a count, TPML_DIGESTs
// of at most 8), so that tpm2_checkquote also checks pcrDigest.
func tpm2ToolsPCRs(pcrs []int, vals map[int][]byte) []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, 1)
	sel := make([]byte, 16*8)
	le.PutUint16(sel, uint16(tpm2.TPMAlgSHA256))
	sel[2] = 3
	for _, p := range pcrs {
		sel[3+p/8] |= 1 << (p % 8)
	}
	b = append(b, sel...)
	lists := (len(pcrs) + 7) / 8
	b = le.AppendUint32(b, uint32(lists))
	for i := 0; i < lists; i++ {
		chunk := pcrs[i*8 : min(len(pcrs), i*8+8)]
		l := make([]byte, 4+8*66)
		le.PutUint32(l, uint32(len(chunk)))
		for j, p := range chunk {
			le.PutUint16(l[4+j*66:], uint16(len(vals[p])))
			copy(l[4+j*66+2:], vals[p])
		}
		b = append(b, l...)
	}
	return b
}

func TestRSAAKSwtpm(t *testing.T) {
	tp, err := Open(startSwtpm(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	ak, err := tp.CreateAKWith(AKRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := ak.Public.(*rsa.PublicKey)
	if !ok || pub.N.BitLen() != 2048 || pub.E != 65537 {
		t.Fatalf("RSA AK public key %T", ak.Public)
	}
	// The TPM reports the attributes that make it an AK.
	area, err := tpm2.Unmarshal[tpm2.TPMTPublic](ak.PublicArea)
	if err != nil {
		t.Fatal(err)
	}
	attrs := area.ObjectAttributes
	if !attrs.Restricted || !attrs.SignEncrypt || attrs.Decrypt || !attrs.FixedTPM || !attrs.SensitiveDataOrigin {
		t.Fatalf("RSA AK attributes %+v", attrs)
	}

	pcrs := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	nonce := []byte("rsa ak nonce")
	q, err := ak.Quote(nonce, pcrs)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := quote.DecodeSignature(q.Signature)
	if err != nil || sig.Alg != quote.AlgRSASSA || sig.Hash != quote.AlgSHA256 {
		t.Fatalf("signature %+v %v, want RSASSA-SHA256", sig, err)
	}
	vals := quote.PCRValues{quote.AlgSHA256: q.PCRs}
	res, err := quote.Verify(ak.Public, q.Attest, q.Signature, vals, quote.WithNonce(nonce), quote.WithRequiredPCRs(quote.AlgSHA256, pcrs...))
	if err != nil {
		t.Fatalf("RSA AK quote rejected: %v", err)
	}
	// Endorsement hierarchy: resetCount is the TPM's, not obfuscated
	// (swtpm started once: resetCount 0 or 1 depending on its init).
	if res.Attest.ClockInfo.ResetCount > 1 {
		t.Fatalf("resetCount %d looks obfuscated", res.Attest.ClockInfo.ResetCount)
	}
	if _, err := quote.Verify(ak.Public, q.Attest, q.Signature, vals, quote.WithNonce([]byte("other"))); err == nil {
		t.Fatal("accepted under another nonce")
	}

	// The ECC default is unchanged and distinct.
	eccAK, err := tp.CreateAKWith(AKECCP256)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := eccAK.Public.(*ecdsa.PublicKey); !ok {
		t.Fatalf("AKECCP256 gave %T", eccAK.Public)
	}
	_ = eccAK.Close()
	if _, err := tp.CreateAKWith(AKKind(7)); err == nil {
		t.Fatal("unknown kind accepted")
	}

	// tpm2_checkquote (tpm2-tools) accepts the quote, pcrDigest included.
	if _, err := exec.LookPath("tpm2_checkquote"); err == nil || os.Getenv("RAT_REQUIRE_INTEGRATION") == "1" {
		check := requireTool(t, "tpm2_checkquote")
		dir := t.TempDir()
		der, _ := x509.MarshalPKIXPublicKey(ak.Public)
		files := map[string][]byte{
			"ak.pem":   pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
			"q.attest": q.Attest, "q.sig": q.Signature, "pcrs.bin": tpm2ToolsPCRs(pcrs, q.PCRs),
		}
		for n, b := range files {
			if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		args := []string{"-u", "ak.pem", "-m", "q.attest", "-s", "q.sig", "-f", "pcrs.bin", "-g", "sha256", "-q", hex.EncodeToString(nonce)}
		cmd := exec.Command(check, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tpm2_checkquote refused the RSA AK quote: %v\n%s", err, out)
		}
		args[len(args)-1] = hex.EncodeToString([]byte("other"))
		cmd = exec.Command(check, args...)
		cmd.Dir = dir
		if err := cmd.Run(); err == nil {
			t.Fatal("tpm2_checkquote accepted another nonce: the cross-check proves nothing")
		}
	}

	// The RSA AK binds to the EK by credential activation like the ECC one
	// (credential.Make also checks the AK's attributes).
	ek, err := tp.CreateEK()
	if err != nil {
		t.Fatal(err)
	}
	ch, err := credential.Make(ek.PublicArea, ak.PublicArea)
	if err != nil {
		t.Fatalf("credential for the RSA AK: %v", err)
	}
	answer, err := ek.ActivateCredential(ak, ch.IDObject, ch.EncSecret)
	if err != nil {
		t.Fatalf("activation with the RSA AK: %v", err)
	}
	if err := ch.Check(answer); err != nil {
		t.Fatal(err)
	}
	_ = ek.Close()

	// Same key after the agent restarts (primary key re-derived).
	first, _ := x509.MarshalPKIXPublicKey(ak.Public)
	if err := ak.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := tp.CreateAKWith(AKRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	second, _ := x509.MarshalPKIXPublicKey(again.Public)
	if !bytes.Equal(first, second) {
		t.Fatal("re-created RSA AK differs")
	}
}
