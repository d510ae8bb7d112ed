package runtimepolicy

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// VerificationKeys is the decoded "verification-keys" string: IMA
// signature verification public keys (base64 DER SubjectPublicKeyInfo)
// and their IMA key ids (keyidv2: the low 32 bits of the subject key id).
type VerificationKeys struct {
	PubKeys []string `json:"pubkeys"`
	KeyIDs  []uint32 `json:"keyids"`
}

// encode writes Keylime's form (Python json.dumps separators).
func (v VerificationKeys) encode() string {
	var b strings.Builder
	b.WriteString(`{"pubkeys": [`)
	for i, k := range v.PubKeys {
		if i > 0 {
			b.WriteString(", ")
		}
		q, _ := json.Marshal(k)
		b.Write(q)
	}
	b.WriteString(`], "keyids": [`)
	for i, id := range v.KeyIDs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, id)
	}
	b.WriteString("]}")
	return b.String()
}

// DecodeVerificationKeys parses a policy's "verification-keys" value
// ("" means none).
func DecodeVerificationKeys(s string) (VerificationKeys, error) {
	var v VerificationKeys
	if strings.TrimSpace(s) == "" {
		return v, nil
	}
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return v, fmt.Errorf("runtimepolicy: verification-keys: %w", err)
	}
	if len(v.KeyIDs) != 0 && len(v.KeyIDs) != len(v.PubKeys) {
		return v, errors.New("runtimepolicy: verification-keys: pubkeys and keyids differ in length")
	}
	return v, nil
}

// keyFromPEM reads a certificate or public key (PEM or DER) and returns
// its SubjectPublicKeyInfo DER and IMA keyidv2. For a certificate with a
// subject key identifier the key id is that identifier's last four bytes;
// otherwise SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 method 1).
func keyFromPEM(data []byte) (spki []byte, keyID uint32, err error) {
	der := data
	if blk, _ := pem.Decode(data); blk != nil {
		der = blk.Bytes
	}
	var pub any
	var skid []byte
	if c, cerr := x509.ParseCertificate(der); cerr == nil {
		pub, skid = c.PublicKey, c.SubjectKeyId
	} else if pub, err = x509.ParsePKIXPublicKey(der); err != nil {
		return nil, 0, fmt.Errorf("not a certificate or public key: %w", err)
	}
	if spki, err = x509.MarshalPKIXPublicKey(pub); err != nil {
		return nil, 0, err
	}
	if len(skid) < 4 {
		var bits []byte
		switch k := pub.(type) {
		case *rsa.PublicKey:
			bits = x509.MarshalPKCS1PublicKey(k)
		case *ecdsa.PublicKey:
			ek, e := k.ECDH()
			if e != nil {
				return nil, 0, e
			}
			bits = ek.Bytes()
		default:
			return nil, 0, fmt.Errorf("unsupported key type %T", pub)
		}
		h := sha1.Sum(bits)
		skid = h[:]
	}
	return spki, binary.BigEndian.Uint32(skid[len(skid)-4:]), nil
}

func addVerificationKeys(p *Policy, keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	v, err := DecodeVerificationKeys(p.VerificationKeys)
	if err != nil {
		return err
	}
	for i, k := range keys {
		spki, id, err := keyFromPEM(k)
		if err != nil {
			return fmt.Errorf("runtimepolicy: verification key %d: %w", i+1, err)
		}
		v.PubKeys = append(v.PubKeys, base64.StdEncoding.EncodeToString(spki))
		v.KeyIDs = append(v.KeyIDs, id)
	}
	p.VerificationKeys = v.encode()
	return nil
}
