package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// NonceWindow is the nonces issued to a device that it may still use,
// oldest first, as hubs stored them before keyed nonces (hub/verifier
// nonceAt): a hub now issues none into it, reads it until it leaves the
// window, then drops it. Its JSON form is the plain list. In a CBOR device record it
// is one packed byte string (nonceWindowV1) instead of an array of
// {idx, value, at} maps: with 64 nonces the maps, their key names and the
// RFC 3339 times were ≈ 5 KB of a ≈ 6 KB record, which then spanned two
// bbolt pages per save, and most of the record's encode and decode time.
// Records holding the array form (written by older hubs, or by this one
// for a window the packed form cannot hold exactly) are still read.
type NonceWindow []Nonce

// nonceWindowV1 is the first byte of the packed form. Each nonce follows
// as varint(idx − previous idx), uvarint(len(value)), value,
// varint(unix nanoseconds of at − previous), the previous values
// starting at 0.
const nonceWindowV1 = 1

// packable reports whether the packed form holds w exactly: every time is
// UTC (as the verifier issues them) and representable in Unix nanoseconds.
func (w NonceWindow) packable() bool {
	for i := range w {
		t := w[i].At
		if t.IsZero() || t.Location() != time.UTC || t.Year() < 1678 || t.Year() > 2261 {
			return false
		}
	}
	return true
}

// MarshalCBOR encodes w as a CBOR byte string in the packed form, or as
// the array older hubs wrote if the packed form cannot hold it exactly.
func (w NonceWindow) MarshalCBOR() ([]byte, error) {
	if !w.packable() {
		return devEnc.Marshal([]Nonce(w))
	}
	// The body is written after room for the CBOR head of a byte string
	// (major type 2), which is put in front of it at the end: one
	// allocation for the whole item.
	const room = 9
	n := room + 1
	{
		var idx uint64
		var at int64
		for i := range w {
			ns := w[i].At.UnixNano()
			n += varintLen(int64(w[i].Idx-idx)) + uvarintLen(uint64(len(w[i].Value))) + len(w[i].Value) + varintLen(ns-at)
			idx, at = w[i].Idx, ns
		}
	}
	buf := make([]byte, room, n)
	buf = append(buf, nonceWindowV1)
	var idx uint64
	var at int64
	for i := range w {
		x := &w[i]
		ns := x.At.UnixNano()
		buf = binary.AppendVarint(buf, int64(x.Idx-idx))
		buf = binary.AppendUvarint(buf, uint64(len(x.Value)))
		buf = append(buf, x.Value...)
		buf = binary.AppendVarint(buf, ns-at)
		idx, at = x.Idx, ns
	}
	var head []byte
	switch l := uint64(len(buf) - room); {
	case l < 24:
		head = []byte{0x40 | byte(l)}
	case l <= 0xff:
		head = []byte{0x58, byte(l)}
	case l <= 0xffff:
		head = binary.BigEndian.AppendUint16([]byte{0x59}, uint16(l))
	case l <= 0xffffffff:
		head = binary.BigEndian.AppendUint32([]byte{0x5a}, uint32(l))
	default:
		head = binary.BigEndian.AppendUint64([]byte{0x5b}, l)
	}
	copy(buf[room-len(head):], head)
	return buf[room-len(head):], nil
}

// UnmarshalCBOR reads either form. The nonce values share one fresh
// buffer (data may be the store's memory map).
func (w *NonceWindow) UnmarshalCBOR(data []byte) error {
	if len(data) == 0 {
		return errors.New("store: nonce window: empty")
	}
	switch data[0] >> 5 {
	case 7: // null or undefined
		*w = nil
		return nil
	case 4: // array: the form older hubs wrote
		var ns []Nonce
		if err := devDec.Unmarshal(data, &ns); err != nil {
			return fmt.Errorf("store: nonce window: %w", err)
		}
		*w = ns
		return nil
	case 2:
	default:
		return fmt.Errorf("store: nonce window: unexpected CBOR major type %d", data[0]>>5)
	}
	var body []byte
	if err := devDec.Unmarshal(data, &body); err != nil {
		return fmt.Errorf("store: nonce window: %w", err)
	}
	ns, err := unpackNonces(body)
	if err != nil {
		return fmt.Errorf("store: nonce window: %w", err)
	}
	*w = ns
	return nil
}

// unpackNonces decodes the packed form; the values alias body.
func unpackNonces(body []byte) (NonceWindow, error) {
	if len(body) == 0 || body[0] != nonceWindowV1 {
		return nil, errors.New("unknown packed form")
	}
	p := body[1:]
	if len(p) == 0 {
		return nil, nil
	}
	ns := make(NonceWindow, 0, countPacked(p))
	var idx uint64
	var at int64
	for len(p) > 0 {
		d, k := binary.Varint(p)
		if k <= 0 {
			return nil, errors.New("truncated index")
		}
		p = p[k:]
		l, k := binary.Uvarint(p)
		if k <= 0 || l > uint64(len(p)-k) {
			return nil, errors.New("truncated value")
		}
		p = p[k:]
		v := p[:l:l]
		p = p[l:]
		dt, k := binary.Varint(p)
		if k <= 0 {
			return nil, errors.New("truncated time")
		}
		p = p[k:]
		idx += uint64(d)
		at += dt
		ns = append(ns, Nonce{Idx: idx, Value: v, At: time.Unix(0, at).UTC()})
	}
	return ns, nil
}

// countPacked counts the nonces of a packed window by their lengths alone
// (so that the window is allocated once), stopping at anything malformed.
func countPacked(p []byte) int {
	n := 0
	for len(p) > 0 {
		_, k := binary.Varint(p)
		if k <= 0 {
			break
		}
		l, k2 := binary.Uvarint(p[k:])
		if k2 <= 0 || l > uint64(len(p)-k-k2) {
			break
		}
		p = p[k+k2+int(l):]
		if _, k = binary.Varint(p); k <= 0 {
			break
		}
		p = p[k:]
		n++
	}
	return n
}

// uvarintLen is the length of binary.AppendUvarint(nil, x).
func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// varintLen is the length of binary.AppendVarint(nil, x).
func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}
