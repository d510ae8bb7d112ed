package runtimepolicy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
)

// IMA digital signature v2 (the security.ima xattr carried by ima-sig):
// type 0x03, version 0x02, hash algorithm (kernel hash_algo enum), key id
// (4 bytes), signature size (2 bytes big-endian), signature.
const (
	imaXattrDigsig = 0x03
	imaSigV2       = 0x02
)

var imaHashAlgo = map[byte]crypto.Hash{2: crypto.SHA1, 4: crypto.SHA256, 5: crypto.SHA384, 6: crypto.SHA512, 7: crypto.SHA224}

type sigKey struct {
	id  uint32
	pub any
}

func (p *Policy) sigKeys() []sigKey {
	v, err := DecodeVerificationKeys(p.VerificationKeys)
	if err != nil {
		return nil // fail closed: no key verifies anything
	}
	var out []sigKey
	for i, b64 := range v.PubKeys {
		der, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			continue
		}
		k := sigKey{pub: pub}
		if i < len(v.KeyIDs) {
			k.id = v.KeyIDs[i]
		} else if _, id, err := keyFromPEM(der); err == nil {
			k.id = id
		}
		out = append(out, k)
	}
	return out
}

// verifyIMASig reports whether sig is a valid IMA v2 signature of the file
// digest by one of keys.
func verifyIMASig(keys []sigKey, sig, digest []byte) bool {
	if len(sig) < 9 || sig[0] != imaXattrDigsig || sig[1] != imaSigV2 {
		return false
	}
	h, ok := imaHashAlgo[sig[2]]
	if !ok || h.Size() != len(digest) {
		return false
	}
	id := binary.BigEndian.Uint32(sig[3:7])
	n := int(binary.BigEndian.Uint16(sig[7:9]))
	if len(sig) != 9+n {
		return false
	}
	s := sig[9:]
	for _, k := range keys {
		if k.id != id {
			continue
		}
		switch pub := k.pub.(type) {
		case *rsa.PublicKey:
			if rsa.VerifyPKCS1v15(pub, h, digest, s) == nil {
				return true
			}
		case *ecdsa.PublicKey:
			if ecdsa.VerifyASN1(pub, digest, s) {
				return true
			}
		}
	}
	return false
}
