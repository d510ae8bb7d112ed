package store

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ratatouille/rat/evidence/quote"
)

// Sizes of a device record as the hub saves it after enrollment and a few
// attestations (measured on records of the TPM simulator, RSA-2048 EK
// with one certificate, ECC P-256 AK): every byte field random, so
// nothing compresses or dedups better than the real thing.
const (
	benchEKPublic = 314  // RSA-2048 EK TPMT_PUBLIC
	benchEKCert   = 1100 // DER EK certificate
	benchAK       = 88   // ECC P-256 AK TPMT_PUBLIC
	benchBinding  = 560  // COSE_Sign1 AK binding
	benchRecord   = 1790 // one evidence record: claims, quote, 11 PCRs, 10 IMA entries
)

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// benchDevice is device i's record after attestations records.
func benchDevice(i, attestations int, now time.Time) *Device {
	id := fmt.Sprintf("dev-%06d", i)
	d := &Device{Key: "default/" + id, ID: id, Fleet: "default", Group: "lab", State: Trusted,
		EKPublic: randBytes(benchEKPublic), EKCerts: [][]byte{randBytes(benchEKCert)}, EKVerified: true, EKIssuer: "CN=Test TPM Manufacturer Root",
		AKPublic: randBytes(benchAK), EnrolledAt: now.Add(-time.Hour), LastSeen: now, LastVerified: now,
		NextSeq: uint64(attestations) + 1, QuotePrev: randBytes(32), HaveClock: true,
		Clock:     quote.ClockInfo{Clock: 123456789, ResetCount: 3, RestartCount: 0, Safe: true},
		NonceUsed: uint64(attestations), NonceNext: uint64(attestations) + 1,
		BootID: "6f1c2b7e-9d3a-4c55-8e21-0b7a9c4d2e10", BootStartSeq: 1, IMACount: uint64(1500 + 10*attestations), PCR10: randBytes(32),
		Release: "1.4.2", EventLogVerified: true, PolicyDigest: "sha256:" + strings.Repeat("ab", 32),
		PolicyUses: []PolicyUse{{Digest: "sha256:" + strings.Repeat("ab", 32), FromSeq: 1, Since: now.Add(-time.Hour)}},
		Binding:    randBytes(benchBinding), Quotes: uint64(attestations)}
	sb := true
	d.SecureBoot = &sb
	// No nonce window: the verifier's nonces are keyed (hub/verifier
	// nonceAt), so a record holds only NonceUsed and NonceNext.
	return d
}

// procIO reads this process's I/O counters (/proc/self/io): wchar is what
// write system calls passed to the kernel, write_bytes what was sent (or
// dirtied for) the storage layer.
func procIO(tb testing.TB) (wchar, writeBytes int64) {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		tb.Skipf("no /proc/self/io: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "wchar":
			wchar = n
		case "write_bytes":
			writeBytes = n
		}
	}
	return wchar, writeBytes
}

// BenchmarkWriteAmplification persists accepted records the way the hub
// does for each one (Store.Save: the updated device record and the raw
// evidence record, durable before the ack), from 1 writer (one record per
// commit: an idle hub) and from 256 writers (the hub's workers under load,
// sharing group commits), into a store that already holds 1,000 devices.
// It reports the bytes the process wrote (write system calls, and bytes
// sent to the storage layer) per record, and both divided by the record's
// size (the evidence record alone, and evidence + device record).
func BenchmarkWriteAmplification(b *testing.B) {
	now := time.Now().UTC()
	const fleet = 1000
	for _, writers := range []int{1, 256} {
		b.Run("writers="+strconv.Itoa(writers), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "s.db")
			st, err := OpenBolt(path)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			devs := make([]*Device, fleet)
			var wg sync.WaitGroup
			for i := range devs {
				devs[i] = benchDevice(i, 64, now)
				wg.Add(1)
				go func(d *Device) { defer wg.Done(); _ = st.Save(d, nil, 0, nil) }(devs[i])
			}
			wg.Wait()
			raw := randBytes(benchRecord)
			devBytes, _ := encodeDevice(devs[0])
			next := make(chan int, b.N)
			for i := 0; i < b.N; i++ {
				next <- i
			}
			close(next)
			errs := make(chan error, writers)
			w0, wb0 := procIO(b)
			b.ResetTimer()
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					// Writer w owns devices w, w+writers, …: the hub orders
					// each device on one worker. Each Save is its device's
					// next record, appended after the ones before it.
					var own []Device
					for j := w; j < fleet; j += writers {
						own = append(own, *devs[j])
					}
					for k := 0; ; k++ {
						if _, ok := <-next; !ok {
							return
						}
						d := &own[k%len(own)]
						d.NextSeq++
						d.NonceUsed, d.NonceNext = d.NonceNext, d.NonceNext+1
						if err := st.Save(d, nil, d.NextSeq, raw); err != nil {
							errs <- err
							return
						}
					}
				}(w)
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
			w1, wb1 := procIO(b)
			n := float64(b.N)
			if fi, err := os.Stat(path); err == nil {
				// The file's size per record: space amplification.
				b.ReportMetric(float64(fi.Size())/n, "file-B/record")
			}
			b.ReportMetric(float64(w1-w0)/n, "wchar-B/record")
			b.ReportMetric(float64(wb1-wb0)/n, "disk-B/record")
			b.ReportMetric(float64(w1-w0)/n/float64(len(raw)), "wchar/evidence")
			b.ReportMetric(float64(w1-w0)/n/float64(len(raw)+len(devBytes)), "wchar/(evidence+device)")
			b.ReportMetric(float64(wb1-wb0)/n/float64(len(raw)+len(devBytes)), "disk/(evidence+device)")
		})
	}
}

// restartDevices is the fleet size of BenchmarkRestart (RAT_STORE_DEVICES,
// default 100,000).
func restartDevices(tb testing.TB) int {
	if s := os.Getenv("RAT_STORE_DEVICES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			tb.Fatalf("RAT_STORE_DEVICES=%q", s)
		}
		return n
	}
	return 100_000
}

// CachedFleetStore returns the path of a bbolt store holding n devices,
// each as the hub saves it after enrollment (events "enrolled" and "state")
// and records attestations (device record, evidence records, nonce
// window). It is made once under dir (it takes minutes for 100k devices)
// and reused.
func cachedFleetStore(tb testing.TB, dir string, n, records int) string {
	path := filepath.Join(dir, fmt.Sprintf("fleet-v2-d%d-r%d.db", n, records))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	st, err := OpenBolt(tmp)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now().UTC()
	raw := randBytes(benchRecord)
	next := make(chan int, 1024)
	errs := make(chan error, 256)
	var wg sync.WaitGroup
	for w := 0; w < 256; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				d := benchDevice(i, 0, now)
				d.State, d.NextSeq = Enrolling, 1
				evs := []Event{{Time: now, Kind: "enrolled", Detail: "credential activation; EK certificate verified"}}
				if err := st.Save(d, evs, 0, nil); err != nil {
					errs <- err
					return
				}
				for seq := 1; seq <= records; seq++ {
					d := benchDevice(i, seq, now)
					var evs []Event
					if seq == 1 {
						evs = []Event{{Time: now, Kind: "state", Seq: 1, State: Trusted}}
					}
					if err := st.Save(d, evs, uint64(seq), raw); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatal(err)
	}
	if err := st.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
	return path
}

// BenchmarkRestart is what the hub reads from its store before it accepts
// messages (rat-hub serve: OpenBolt, then server.Start loads every
// device's key, state and last verification for the staleness index with
// Briefs), on a store of RAT_STORE_DEVICES devices with 3 attestations
// each, with the file in the page cache (warm) and evicted from it (cold).
// The store is cached under $TMPDIR/rat-storebench.
func BenchmarkRestart(b *testing.B) {
	n := restartDevices(b)
	path := cachedFleetStore(b, filepath.Join(os.TempDir(), "rat-storebench"), n, 3)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("store %s: %d devices, %d bytes", path, n, fi.Size())
	for _, cold := range []bool{false, true} {
		name := "warm"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			// A copy, so nothing of this run changes the cached store.
			work := filepath.Join(b.TempDir(), "hub.db")
			if err := copyFile(path, work); err != nil {
				b.Fatal(err)
			}
			// A cached store written before the current briefs format
			// gets its briefs rebuilt at its first open: once, not timed
			// with the restarts.
			t0 := time.Now()
			st, err := OpenBolt(work)
			if err != nil {
				b.Fatal(err)
			}
			if err := st.Close(); err != nil {
				b.Fatal(err)
			}
			b.Logf("first open (rebuilds briefs of an older format): %v", time.Since(t0))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if cold {
					b.StopTimer()
					evict(b, work)
					b.StartTimer()
				}
				st, err := OpenBolt(work)
				if err != nil {
					b.Fatal(err)
				}
				briefs, err := st.Briefs()
				if err != nil || len(briefs) != n {
					b.Fatalf("%d briefs, %v", len(briefs), err)
				}
				b.StopTimer()
				if err := st.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
