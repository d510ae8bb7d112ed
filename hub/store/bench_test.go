package store

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// BenchmarkStaleScan is the hub's once-a-second staleness scan over 10,000
// device records of realistic size (a full 64-nonce window): whole records
// (Devices) against the fields the scan needs (Briefs).
func BenchmarkStaleScan(b *testing.B) {
	st, err := OpenBolt(filepath.Join(b.TempDir(), "s.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const n = 10000
	now := time.Now().UTC()
	// Concurrent saves share group commits (one fsync each would take minutes).
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d := &Device{Key: fmt.Sprintf("default/d%05d", i), ID: fmt.Sprintf("d%05d", i), Fleet: "default", Group: "g", State: Trusted,
				EKPublic: make([]byte, 280), AKPublic: make([]byte, 88), QuotePrev: make([]byte, 32), PCR10: make([]byte, 32), LastVerified: now}
			for k := 0; k < 64; k++ {
				d.Nonces = append(d.Nonces, Nonce{Idx: uint64(k), Value: make([]byte, 32), At: now})
			}
			errs <- st.Save(d, nil, 0, nil)
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Devices", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if ds, err := st.Devices(); err != nil || len(ds) != n {
				b.Fatal(err)
			}
		}
	})
	b.Run("Briefs", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if ds, err := st.Briefs(); err != nil || len(ds) != n {
				b.Fatal(err)
			}
		}
	})
}
