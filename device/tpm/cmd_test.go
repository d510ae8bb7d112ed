package tpm

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// The hand-marshalled templates are byte for byte go-tpm's: the EK and AK
// are primary keys derived from the template, so any difference would
// give every enrolled device a new AK (and EK) after an upgrade.
func TestTemplatesMatchGoTPM(t *testing.T) {
	attrs := tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
		UserWithAuth: true, Restricted: true, SignEncrypt: true, NoDA: true,
	}
	for _, tc := range []struct {
		name string
		got  []byte
		want tpm2.TPMTPublic
	}{
		{"EK (RSA-2048, TCG default)", ekTemplate(), tpm2.RSAEKTemplate},
		{"AK ECC P-256", akTemplate(), tpm2.TPMTPublic{
			Type: tpm2.TPMAlgECC, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Scheme: tpm2.TPMTECCScheme{
					Scheme:  tpm2.TPMAlgECDSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
				},
				CurveID: tpm2.TPMECCNistP256,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
		}},
		{"AK RSA-2048", akRSATemplate(), tpm2.TPMTPublic{
			Type: tpm2.TPMAlgRSA, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Scheme: tpm2.TPMTRSAScheme{
					Scheme:  tpm2.TPMAlgRSASSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
				},
				KeyBits: 2048,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if want := tpm2.Marshal(tc.want); !bytes.Equal(tc.got, want) {
				t.Fatalf("template\n got %x\nwant %x", tc.got, want)
			}
		})
	}
}

func TestPCRSelectionMatchesGoTPM(t *testing.T) {
	for _, tc := range []struct {
		name string
		pcrs []int
	}{
		{"none", nil},
		{"one", []int{10}},
		{"boot and IMA", []int{0, 1, 2, 3, 4, 5, 6, 7, 10}},
		{"past 23", []int{0, 23, 24}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &out{}
			o.pcrSelection(tc.pcrs)
			u := make([]uint, len(tc.pcrs))
			for i, p := range tc.pcrs {
				u[i] = uint(p)
			}
			want := tpm2.Marshal(tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
				Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(u...),
			}}})
			if o.err != nil || !bytes.Equal(o.b, want) {
				t.Fatalf("selection %x (%v), want %x", o.b, o.err, want)
			}
		})
	}
}

func TestMarshalRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		fill func(*out)
	}{
		{"TPM2B over 64 KiB", func(o *out) { o.tpm2b(make([]byte, 0x10000)) }},
		{"negative PCR", func(o *out) { o.pcrSelection([]int{-1}) }},
		{"PCR past any bank", func(o *out) { o.pcrSelection([]int{8 * 255}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &out{}
			tc.fill(o)
			if o.err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// The public areas the TPM returned decode the same here as in go-tpm,
// and re-marshal to the same bytes (what the agent sends is canonical).
func TestPublicAreasSwtpm(t *testing.T) {
	tp, err := Open(startSwtpm(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	ek, err := tp.CreateEK()
	if err != nil {
		t.Fatal(err)
	}
	defer ek.Close()
	ecc, err := tp.CreateAK()
	if err != nil {
		t.Fatal(err)
	}
	defer ecc.Close()
	rsa, err := tp.CreateAKWith(AKRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	defer rsa.Close()
	for _, tc := range []struct {
		name string
		area []byte
	}{{"EK", ek.PublicArea}, {"ECC AK", ecc.PublicArea}, {"RSA AK", rsa.PublicArea}} {
		t.Run(tc.name, func(t *testing.T) {
			ref, err := tpm2.Unmarshal[tpm2.TPMTPublic](tc.area)
			if err != nil {
				t.Fatal(err)
			}
			if again := tpm2.Marshal(ref); !bytes.Equal(again, tc.area) {
				t.Fatalf("go-tpm re-marshals the public area differently")
			}
			p, err := parsePublic(tc.area)
			if err != nil {
				t.Fatal(err)
			}
			if p.typ != uint16(ref.Type) || p.nameAlg != uint16(ref.NameAlg) {
				t.Fatalf("type/nameAlg %04x/%04x, go-tpm %04x/%04x", p.typ, p.nameAlg, ref.Type, ref.NameAlg)
			}
			switch ref.Type {
			case tpm2.TPMAlgRSA:
				n, _ := ref.Unique.RSA()
				d, _ := ref.Parameters.RSADetail()
				if !bytes.Equal(p.rsaModulus, n.Buffer) || p.rsaBits != uint16(d.KeyBits) || p.rsaExponent != d.Exponent {
					t.Fatal("RSA parameters differ from go-tpm's decoding")
				}
			case tpm2.TPMAlgECC:
				pt, _ := ref.Unique.ECC()
				d, _ := ref.Parameters.ECCDetail()
				if !bytes.Equal(p.eccX, pt.X.Buffer) || !bytes.Equal(p.eccY, pt.Y.Buffer) || p.eccCurve != uint16(d.CurveID) {
					t.Fatal("ECC point differs from go-tpm's decoding")
				}
			}
			for cut := 0; cut < len(tc.area); cut += 7 {
				if _, err := parsePublic(tc.area[:cut]); err == nil {
					t.Fatalf("a public area cut at %d bytes decoded", cut)
				}
			}
			if _, err := parsePublic(append(append([]byte(nil), tc.area...), 0)); err == nil {
				t.Fatal("a public area with a trailing byte decoded")
			}
		})
	}
}

// TPM errors come back as *RCError naming the code and where it applies.
func TestRCErrorSwtpm(t *testing.T) {
	tp, err := Open(startSwtpm(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	err = tp.flush(0x80ffffff) // no such transient object
	var rc *RCError
	if !errors.As(err, &rc) || rc.Command != ccFlushContext {
		t.Fatalf("flush of an unknown handle: %v", err)
	}
	if s := err.Error(); !strings.Contains(s, "TPM_RC_") || !strings.Contains(s, "parameter 1") {
		t.Fatalf("error text %q does not name the code and the parameter", s)
	}
	if err := tp.Extend(10, make([]byte, 20)); err == nil {
		t.Fatal("a SHA-1 sized digest was extended into the sha256 bank")
	}
}
