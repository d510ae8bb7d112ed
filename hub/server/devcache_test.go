package server

import (
	"reflect"
	"testing"

	"github.com/ratatouille/rat/hub/store"
)

// fill sets every field reachable from v to a non-zero value: slices and
// maps get two elements, pointers a target.
func fill(t *testing.T, v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(t, v.Field(i), n)
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := 0; i < 2; i++ {
			fill(t, v.Index(i), n)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		for i := 0; i < 2; i++ {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(t, k, n)
			fill(t, e, n)
			v.SetMapIndex(k, e)
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), n)
	case reflect.String:
		v.SetString("s" + string(rune('a'+*n%26)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n % 250))
	default:
		t.Fatalf("fill: %s", v.Type())
	}
}

// shared reports a path where a and b share memory (same slice array, map
// or pointer target).
func shared(a, b reflect.Value, path string) string {
	switch a.Kind() {
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			if a.Type().Field(i).IsExported() {
				if p := shared(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); p != "" {
					return p
				}
			}
		}
	case reflect.Slice:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			return path
		}
		for i := 0; i < a.Len(); i++ {
			if p := shared(a.Index(i), b.Index(i), path+"[]"); p != "" {
				return p
			}
		}
	case reflect.Map:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			return path
		}
	case reflect.Pointer:
		if !a.IsNil() && a.Pointer() == b.Pointer() {
			return path
		}
		if !a.IsNil() {
			return shared(a.Elem(), b.Elem(), path+"*")
		}
	}
	return ""
}

// TestCloneDevice: the copy equals the device and shares no memory with it,
// for every field (a field added to store.Device that cloneDevice does not
// copy deeply fails here); nil and empty stay as they were.
func TestCloneDevice(t *testing.T) {
	var d store.Device
	n := 0
	fill(t, reflect.ValueOf(&d).Elem(), &n)
	c := cloneDevice(&d)
	if !reflect.DeepEqual(&d, c) {
		t.Fatalf("clone differs:\n%+v\n%+v", d, *c)
	}
	if p := shared(reflect.ValueOf(d), reflect.ValueOf(*c), "Device"); p != "" {
		t.Fatalf("clone shares %s with the original", p)
	}
	// A nonce value grown in the copy does not overwrite the next one.
	c.Nonces[0].Value = append(c.Nonces[0].Value, 0xff)
	if !reflect.DeepEqual(c.Nonces[1].Value, d.Nonces[1].Value) {
		t.Fatal("appending to one nonce value changed the next")
	}
	empty := store.Device{Nonces: []store.Nonce{}, EKCerts: [][]byte{}}
	if c := cloneDevice(&empty); !reflect.DeepEqual(&empty, c) {
		t.Fatalf("empty clone: %+v", c)
	}
	if c := cloneDevice(&store.Device{}); !reflect.DeepEqual(&store.Device{}, c) {
		t.Fatalf("zero clone: %+v", c)
	}
}

// TestDeviceCache: a bounded cache hands out copies, never more than its
// bound, and nothing when off.
func TestDeviceCache(t *testing.T) {
	cases := []struct {
		name      string
		max, puts int
		wantLen   int
	}{
		{"off", -1, 3, 0},
		{"under the bound", 4, 3, 3},
		{"at the bound", 2, 5, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newDeviceCache(tc.max)
			for i := 0; i < tc.puts; i++ {
				c.put(&store.Device{Key: string(rune('a' + i)), State: store.Trusted})
			}
			if len(c.m) != tc.wantLen {
				t.Fatalf("%d cached, want %d", len(c.m), tc.wantLen)
			}
			for k := range c.m {
				got := c.get(k)
				got.State = store.Untrusted
				if c.get(k).State != store.Trusted {
					t.Fatal("a change to the copy reached the cache")
				}
				c.drop(k)
				if c.get(k) != nil {
					t.Fatal("dropped but still cached")
				}
				break
			}
			if tc.max < 0 && c.get("a") != nil {
				t.Fatal("an off cache returned a device")
			}
		})
	}
}
