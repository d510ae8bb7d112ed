package release

import (
	"errors"
	"net/http"
	"unicode"
)

// DeviceHeaderUnsafe is the header HeaderIdentityUnsafe reads.
const DeviceHeaderUnsafe = "X-Rat-Device-Unsafe"

// HeaderIdentityUnsafe names the caller by the X-Rat-Device-Unsafe header,
// for demos on loopback only (`make demo`, `secret-release
// -device-header-unsafe`). It proves nothing: any caller can claim any
// device, so a stolen token for that device is enough to get its secret.
// Real deployments use ClientCertIdentity (mTLS), which binds the token's
// sub to a key the caller holds.
func HeaderIdentityUnsafe(r *http.Request) (string, error) {
	vs := r.Header.Values(DeviceHeaderUnsafe)
	if len(vs) != 1 || vs[0] == "" || len(vs[0]) > 128 {
		return "", errors.New("want exactly one non-empty " + DeviceHeaderUnsafe + " header")
	}
	for _, c := range vs[0] {
		if c > unicode.MaxASCII || !(unicode.IsLetter(c) || unicode.IsDigit(c) || c == '-' || c == '_' || c == '.') {
			return "", errors.New(DeviceHeaderUnsafe + " is not a device id")
		}
	}
	return vs[0], nil
}
