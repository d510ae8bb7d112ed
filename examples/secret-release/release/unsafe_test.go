package release

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHeaderIdentityUnsafe(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		want   string
	}{
		{"device id", []string{"edge-1"}, "edge-1"},
		{"none", nil, ""},
		{"empty", []string{""}, ""},
		{"two", []string{"edge-1", "edge-2"}, ""},
		{"path", []string{"../edge-1"}, ""},
		{"fleet-qualified", []string{"default/edge-1"}, ""},
		{"space", []string{"edge 1"}, ""},
		{"non-ASCII", []string{"édge"}, ""},
		{"too long", []string{strings.Repeat("e", 129)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v1/secret", nil)
			for _, v := range tc.values {
				r.Header.Add(DeviceHeaderUnsafe, v)
			}
			got, err := HeaderIdentityUnsafe(r)
			if got != tc.want || (err == nil) != (tc.want != "") {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// FuzzHeaderIdentityUnsafe: an accepted header is a plain device id.
func FuzzHeaderIdentityUnsafe(f *testing.F) {
	for _, s := range []string{"edge-1", "", "../x", "a/b", "é", strings.Repeat("e", 129), "a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r := httptest.NewRequest("GET", "/v1/secret", nil)
		r.Header[DeviceHeaderUnsafe] = []string{v}
		id, err := HeaderIdentityUnsafe(r)
		if err != nil {
			return
		}
		if id != v || len(id) == 0 || len(id) > 128 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" {
			t.Fatalf("accepted %q as %q", v, id)
		}
	})
}
