package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ratatouille/rat/evidence/eventlog"
)

// manufacture plays the TPM vendor for the simulated TPM: a demo
// manufacturer CA in caDir (created once: ca.key, and roots/ca.pem for the
// hub's --ek-roots) issues a certificate for the simulator's EK, stored at
// NV index 0x01c00002 where real TPMs keep theirs. The hub then verifies
// the EK chain instead of trusting it on first use.
func manufacture(tr transport.TPM, ekPublicArea []byte, caDir string) error {
	caKey, ca, err := loadOrCreateCA(caDir)
	if err != nil {
		return err
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ekPublicArea)
	if err != nil {
		return err
	}
	ekKey, err := tpm2.Pub(*pub)
	if err != nil {
		return err
	}
	now := time.Now()
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "rat-devsim EK"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour), KeyUsage: x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{{2, 23, 133, 8, 1}}} // tcg-kp-EKCertificate
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, crypto.PublicKey(ekKey), caKey)
	if err != nil {
		return fmt.Errorf("EK certificate: %w", err)
	}
	return writeNV(tr, 0x01c00002, der)
}

func loadOrCreateCA(dir string) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	keyPath, certPath := filepath.Join(dir, "ca.key"), filepath.Join(dir, "roots", "ca.pem")
	if kb, err := os.ReadFile(keyPath); err == nil {
		cb, err := os.ReadFile(certPath)
		if err != nil {
			return nil, nil, err
		}
		kblk, _ := pem.Decode(kb)
		cblk, _ := pem.Decode(cb)
		if kblk == nil || cblk == nil {
			return nil, nil, errors.New("demo EK CA: bad PEM")
		}
		k, err := x509.ParseECPrivateKey(kblk.Bytes)
		if err != nil {
			return nil, nil, err
		}
		c, err := x509.ParseCertificate(cblk.Bytes)
		return k, c, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "roots"), 0o700); err != nil {
		return nil, nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rat-devsim demo TPM manufacturer CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return nil, nil, err
	}
	kd, _ := x509.MarshalECPrivateKey(k)
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return k, c, err
}

// writeNV defines an owner-written, world-readable NV index and writes data.
func writeNV(tr transport.TPM, index uint32, data []byte) error {
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	h := tpm2.TPMHandle(index)
	if _, err := (tpm2.NVDefineSpace{AuthHandle: owner, PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
		NVIndex: h, NameAlg: tpm2.TPMAlgSHA256, DataSize: uint16(len(data)),
		Attributes: tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true},
	})}).Execute(tr); err != nil {
		return fmt.Errorf("NV define 0x%08x: %w", index, err)
	}
	for off := 0; off < len(data); off += 512 {
		pub, err := tpm2.NVReadPublic{NVIndex: h}.Execute(tr)
		if err != nil {
			return err
		}
		end := min(off+512, len(data))
		if _, err := (tpm2.NVWrite{AuthHandle: owner, NVIndex: tpm2.NamedHandle{Handle: h, Name: pub.NVName},
			Data: tpm2.TPM2BMaxNVBuffer{Buffer: data[off:end]}, Offset: uint16(off)}).Execute(tr); err != nil {
			return fmt.Errorf("NV write 0x%08x: %w", index, err)
		}
	}
	return nil
}

// firmware plays the firmware: it extends PCRs 0–9 with the events of a
// real firmware event log, as the platform would before the kernel starts,
// so that the log the agent sends replays to the quoted PCRs.
func firmware(tr transport.TPM, raw []byte) error {
	l, err := eventlog.Parse(raw)
	if err != nil {
		return err
	}
	for _, e := range l.Events {
		d, ok := e.Digest(eventlog.AlgSHA256)
		if e.Type == eventlog.EvNoAction || !ok || e.PCR > 9 {
			continue
		}
		if _, err := (tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(e.PCR), Auth: tpm2.PasswordAuth(nil)},
			Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: d}}},
		}).Execute(tr); err != nil {
			return fmt.Errorf("extend PCR %d: %w", e.PCR, err)
		}
	}
	return nil
}
