package tpm

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// The few TPM 2.0 commands the agent sends, marshalled by hand (TPM 2.0
// Part 2 and 3). go-tpm's tpm2 package does the same by reflection over
// every structure in the specification, which was ≈ 0.6 MB of the
// agent's 7 MB arm64 binary; the tests check these bytes against go-tpm's.
const (
	stNoSessions uint16 = 0x8001
	stSessions   uint16 = 0x8002

	rsPW          uint32 = 0x40000009 // TPM_RS_PW
	rhNull        uint32 = 0x40000007
	rhEndorsement uint32 = 0x4000000b

	algRSA    uint16 = 0x0001
	algAES    uint16 = 0x0006
	algSHA256 uint16 = 0x000b
	algNull   uint16 = 0x0010
	algRSASSA uint16 = 0x0014
	algRSAES  uint16 = 0x0015
	algECDSA  uint16 = 0x0018
	algECDAA  uint16 = 0x001a
	algECC    uint16 = 0x0023
	algCFB    uint16 = 0x0043

	eccNistP256 uint16 = 0x0003

	ccActivateCredential uint32 = 0x147
	ccNVRead             uint32 = 0x14e
	ccPolicySecret       uint32 = 0x151
	ccQuote              uint32 = 0x158
	ccFlushContext       uint32 = 0x165
	ccNVReadPublic       uint32 = 0x169
	ccCreatePrimary      uint32 = 0x131
	ccGetCapability      uint32 = 0x17a
	ccPCRRead            uint32 = 0x17e
	ccPCRExtend          uint32 = 0x182
	ccStartAuthSession   uint32 = 0x176

	capHandles uint32 = 0x00000001
	sePolicy   uint8  = 0x01

	// TPMA_SESSION continueSession: the session stays loaded after the
	// command (it is flushed explicitly).
	continueSession uint8 = 0x01
)

// out builds a command's parameters (or handles). Lengths that do not fit
// their TPM2B size field are an error, never silently truncated: some of
// the bytes come from the network (the hub's credential challenge).
type out struct {
	b   []byte
	err error
}

func (o *out) u8(v uint8)   { o.b = append(o.b, v) }
func (o *out) u16(v uint16) { o.b = binary.BigEndian.AppendUint16(o.b, v) }
func (o *out) u32(v uint32) { o.b = binary.BigEndian.AppendUint32(o.b, v) }
func (o *out) raw(p []byte) { o.b = append(o.b, p...) }
func (o *out) tpm2b(p []byte) {
	if len(p) > 0xffff {
		if o.err == nil {
			o.err = fmt.Errorf("a %d-byte buffer does not fit a TPM2B", len(p))
		}
		return
	}
	o.u16(uint16(len(p)))
	o.raw(p)
}

// pcrSelection is a TPML_PCR_SELECTION of the sha256 bank, with the PC
// Client minimum of 3 select bytes (PCRs 0-23).
func (o *out) pcrSelection(pcrs []int) {
	size := 3
	for _, p := range pcrs {
		if p < 0 || p >= 8*255 {
			if o.err == nil {
				o.err = fmt.Errorf("PCR %d out of range", p)
			}
			return
		}
		if p/8+1 > size {
			size = p/8 + 1
		}
	}
	sel := make([]byte, size)
	for _, p := range pcrs {
		sel[p/8] |= 1 << (p % 8)
	}
	o.u32(1)
	o.u16(algSHA256)
	o.u8(uint8(size))
	o.raw(sel)
}

// in reads a response. The first short read sets err; later reads return
// zero values.
type in struct {
	b   []byte
	off int
	err error
}

func (r *in) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = fmt.Errorf("response truncated at byte %d: want %d bytes, have %d", r.off, n, len(r.b)-r.off)
		return nil
	}
	p := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return p
}

func (r *in) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *in) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *in) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *in) tpm2b() []byte { return r.take(int(r.u16())) }

// done reports the first error, or trailing bytes.
func (r *in) done() error {
	if r.err != nil {
		return r.err
	}
	if r.off != len(r.b) {
		return fmt.Errorf("%d trailing bytes in the response", len(r.b)-r.off)
	}
	return nil
}

// session is one command authorization (TPMS_AUTH_COMMAND).
type session struct {
	handle uint32
	nonce  []byte
	attrs  uint8
	hmac   []byte
}

// password is the empty-password authorization every object here has.
var password = session{handle: rsPW, attrs: continueSession}

// policyAuth authorizes with an already satisfied policy session. The
// session is unbound and unsalted and its policy asks for no auth value,
// so the TPM checks no HMAC (TPM 2.0 Part 1, 19.6.13); a fresh caller
// nonce is still sent.
func policyAuth(h uint32) (session, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return session{}, err
	}
	return session{handle: h, nonce: nonce, attrs: continueSession}, nil
}

// RCError is a TPM response code other than TPM_RC_SUCCESS.
type RCError struct {
	Command uint32
	Code    uint32
}

// rcNames names the response codes an operator is most likely to meet
// (the format-one codes without their handle/parameter/session number).
var rcNames = map[uint32]string{
	0x084: "TPM_RC_VALUE", 0x08b: "TPM_RC_HANDLE", 0x08e: "TPM_RC_AUTH_FAIL", 0x095: "TPM_RC_SIZE",
	0x099: "TPM_RC_POLICY_FAIL", 0x09f: "TPM_RC_INTEGRITY", 0x0a2: "TPM_RC_AUTH_UNAVAILABLE",
	0x100: "TPM_RC_INITIALIZE", 0x101: "TPM_RC_FAILURE", 0x143: "TPM_RC_COMMAND_CODE",
	0x149: "TPM_RC_NV_AUTHORIZATION", 0x14b: "TPM_RC_NV_RANGE", 0x14c: "TPM_RC_NV_SIZE",
	0x14f: "TPM_RC_NV_UNINITIALIZED", 0x902: "TPM_RC_OBJECT_MEMORY", 0x903: "TPM_RC_SESSION_MEMORY",
	0x90a: "TPM_RC_TESTING", 0x921: "TPM_RC_LOCKOUT", 0x922: "TPM_RC_RETRY", 0x908: "TPM_RC_YIELDED",
}

func (e *RCError) Error() string {
	c := e.Code
	where := ""
	if c&0x80 != 0 { // format one: the number says which handle, parameter or session
		n := (c >> 8) & 0xf
		switch {
		case c&0x40 != 0:
			where = fmt.Sprintf(" (parameter %d)", n)
		case n&0x8 != 0:
			where = fmt.Sprintf(" (session %d)", n&0x7)
		case n != 0:
			where = fmt.Sprintf(" (handle %d)", n)
		}
		c = 0x80 | c&0x3f
	}
	name := rcNames[c]
	if name == "" {
		name = "TPM error"
	}
	return fmt.Sprintf("%s 0x%03x%s in command 0x%03x", name, e.Code, where, e.Command)
}

// run sends one command: handles, then (when there are sessions) the
// authorization area, then parameters. It returns the response handles
// (nOut of them) and parameters; the response authorization area is not
// checked (no session here is bound, salted or audited).
func (t *TPM) run(cc uint32, handles []uint32, auths []session, params *out, nOut int) ([]uint32, *in, error) {
	if params.err != nil {
		return nil, nil, params.err
	}
	c := &out{}
	tag := stNoSessions
	if len(auths) > 0 {
		tag = stSessions
	}
	c.u16(tag)
	c.u32(0) // size, set below
	c.u32(cc)
	for _, h := range handles {
		c.u32(h)
	}
	if len(auths) > 0 {
		a := &out{}
		for _, s := range auths {
			a.u32(s.handle)
			a.tpm2b(s.nonce)
			a.u8(s.attrs)
			a.tpm2b(s.hmac)
		}
		c.u32(uint32(len(a.b)))
		c.raw(a.b)
	}
	c.raw(params.b)
	binary.BigEndian.PutUint32(c.b[2:6], uint32(len(c.b)))
	rsp, err := t.t.Send(c.b)
	if err != nil {
		return nil, nil, err
	}
	r := &in{b: rsp}
	rtag, size, rc := r.u16(), r.u32(), r.u32()
	if r.err != nil {
		return nil, nil, r.err
	}
	if int(size) != len(rsp) {
		return nil, nil, fmt.Errorf("response of %d bytes says %d", len(rsp), size)
	}
	if rc != 0 {
		return nil, nil, &RCError{Command: cc, Code: rc}
	}
	hs := make([]uint32, nOut)
	for i := range hs {
		hs[i] = r.u32()
	}
	switch rtag {
	case stNoSessions:
		return hs, &in{b: r.take(len(rsp) - r.off), err: r.err}, r.err
	case stSessions:
		n := r.u32()
		p := r.take(int(n))
		return hs, &in{b: p, err: r.err}, r.err
	}
	return nil, nil, errors.New("response with an unknown tag")
}

// public is the part of a TPMT_PUBLIC the agent uses.
type public struct {
	typ, nameAlg uint16
	attrs        uint32
	rsaBits      uint16
	rsaExponent  uint32
	rsaModulus   []byte
	eccCurve     uint16
	eccX, eccY   []byte
}

// parsePublic decodes a TPMT_PUBLIC of an RSA or ECC key.
func parsePublic(b []byte) (*public, error) {
	r := &in{b: b}
	p := &public{typ: r.u16(), nameAlg: r.u16(), attrs: r.u32()}
	r.tpm2b() // authPolicy
	symmetric := func() {
		if r.u16() != algNull {
			r.u16() // keyBits
			r.u16() // mode
		}
	}
	switch p.typ {
	case algRSA:
		symmetric()
		if s := r.u16(); s != algNull && s != algRSAES {
			r.u16() // hashAlg
		}
		p.rsaBits, p.rsaExponent = r.u16(), r.u32()
		p.rsaModulus = r.tpm2b()
	case algECC:
		symmetric()
		switch r.u16() {
		case algNull:
		case algECDAA:
			r.u16() // hashAlg
			r.u16() // count
		default:
			r.u16() // hashAlg
		}
		p.eccCurve = r.u16()
		if r.u16() != algNull { // kdf
			r.u16()
		}
		p.eccX, p.eccY = r.tpm2b(), r.tpm2b()
	default:
		if r.err == nil {
			return nil, fmt.Errorf("TPMT_PUBLIC of type 0x%04x", p.typ)
		}
	}
	if err := r.done(); err != nil {
		return nil, fmt.Errorf("TPMT_PUBLIC: %w", err)
	}
	return p, nil
}

// createPrimary creates a primary key of hierarchy from template (a
// TPMT_PUBLIC) and returns its handle, public area and name.
func (t *TPM) createPrimary(hierarchy uint32, template []byte) (uint32, []byte, []byte, error) {
	p := &out{}
	p.u16(4) // TPM2B_SENSITIVE_CREATE: empty userAuth and data
	p.u16(0)
	p.u16(0)
	p.tpm2b(template)
	p.tpm2b(nil) // outsideInfo
	p.u32(0)     // creationPCR: no selection
	hs, r, err := t.run(ccCreatePrimary, []uint32{hierarchy}, []session{password}, p, 1)
	if err != nil {
		return 0, nil, nil, err
	}
	pub := r.tpm2b()
	r.tpm2b() // creationData
	r.tpm2b() // creationHash
	r.u16()   // creationTicket: tag, hierarchy, digest
	r.u32()
	r.tpm2b()
	name := r.tpm2b()
	if err := r.done(); err != nil {
		_ = t.flush(hs[0])
		return 0, nil, nil, fmt.Errorf("CreatePrimary response: %w", err)
	}
	return hs[0], pub, name, nil
}

func (t *TPM) flush(h uint32) error {
	p := &out{}
	p.u32(h)
	_, _, err := t.run(ccFlushContext, nil, nil, p, 0)
	return err
}
