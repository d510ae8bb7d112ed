package server

import (
	"maps"
	"slices"
	"sync"

	"github.com/ratatouille/rat/hub/store"
)

// defaultDeviceCache bounds the device cache (≈ 2.9 KB of heap per device
// with an EK certificate: ≈ 290 MB for 100,000 devices; a record written
// by a hub before keyed nonces holds a window of 64 nonces, ≈ 9 KB, until
// it ages out).
const defaultDeviceCache = 100_000

// deviceCache holds the device records the hub last stored, decoded, so that
// a record's handling does not read and decode the device from the store
// (a tenth of the hub's CPU per record). It is write-through: Server.save
// puts each device it stored, after the store accepted it, and drops it when
// the store refused it, so the store stays the truth and the cache only
// ever holds what the store holds. This relies on every write of a device
// record going through Server.save in the device's worker (the order
// guarantee of the hub already does). Readers get a deep copy: the
// verifier and the re-judging code change the device they are given.
type deviceCache struct {
	mu  sync.Mutex
	max int
	m   map[string]*store.Device
}

func newDeviceCache(max int) *deviceCache {
	return &deviceCache{max: max, m: map[string]*store.Device{}}
}

// get returns a copy of the cached device, or nil.
func (c *deviceCache) get(key string) *store.Device {
	if c.max <= 0 {
		return nil
	}
	c.mu.Lock()
	d := c.m[key]
	c.mu.Unlock()
	if d == nil {
		return nil
	}
	return cloneDevice(d)
}

// put caches d, which the caller must not change afterwards. When full, an
// arbitrary other device makes room.
func (c *deviceCache) put(d *store.Device) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[d.Key]; !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[d.Key] = d
}

func (c *deviceCache) drop(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}

// cloneDevice is a deep copy of d (TestCloneDevice checks that it shares
// no memory with d, field by field, so a new field cannot be missed).
func cloneDevice(d *store.Device) *store.Device {
	n := *d
	n.EKPublic = slices.Clone(d.EKPublic)
	if d.EKCerts != nil {
		n.EKCerts = make([][]byte, len(d.EKCerts))
		for i, c := range d.EKCerts {
			n.EKCerts[i] = slices.Clone(c)
		}
	}
	n.AKPublic = slices.Clone(d.AKPublic)
	n.QuotePrev = slices.Clone(d.QuotePrev)
	if d.Nonces != nil {
		// One backing array for every nonce value: two allocations
		// instead of one per nonce.
		size := 0
		for _, x := range d.Nonces {
			size += len(x.Value)
		}
		vals := make([]byte, 0, size)
		n.Nonces = make([]store.Nonce, len(d.Nonces))
		for i, x := range d.Nonces {
			n.Nonces[i] = x
			if x.Value != nil {
				vals = append(vals, x.Value...)
				n.Nonces[i].Value = vals[len(vals)-len(x.Value) : len(vals) : len(vals)]
			}
		}
	}
	n.PCR10 = slices.Clone(d.PCR10)
	n.PendingIMA = slices.Clone(d.PendingIMA)
	if d.SecureBoot != nil {
		sb := *d.SecureBoot
		n.SecureBoot = &sb
	}
	n.PolicyUses = slices.Clone(d.PolicyUses)
	n.Binding = slices.Clone(d.Binding)
	if d.Failures != nil {
		n.Failures = slices.Clone(d.Failures)
		for i := range n.Failures {
			n.Failures[i].Fields = maps.Clone(d.Failures[i].Fields)
		}
	}
	return &n
}
