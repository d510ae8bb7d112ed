package imasrc

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ratatouille/rat/evidence/ima"
)

func entry(t *testing.T, i int) ima.Entry {
	d := sha256.Sum256([]byte(fmt.Sprint(i)))
	e, err := ima.NewNgEntry(10, "sha256", d[:], fmt.Sprintf("/usr/bin/f%d", i))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestFileIncremental appends entries (sometimes a torn half entry first,
// as a writer mid-append would leave) and checks that Count and Read(from)
// agree with the file for every offset, however the reads interleave.
func TestFileIncremental(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src := NewFile(path)
	var all []ima.Entry
	for i := 0; i < 40; i++ {
		e := entry(t, i)
		b := ima.MarshalBinary([]ima.Entry{e})
		if i%3 == 0 {
			// torn: half now, the rest after a read
			f.Write(b[:len(b)/2])
			n, err := src.Count()
			if err != nil || n != uint64(len(all)) {
				t.Fatalf("count with torn tail = %d, %v; want %d", n, err, len(all))
			}
			f.Write(b[len(b)/2:])
		} else {
			f.Write(b)
		}
		all = append(all, e)
		n, err := src.Count()
		if err != nil || n != uint64(len(all)) {
			t.Fatalf("count = %d, %v; want %d", n, err, len(all))
		}
		for _, from := range []int{0, len(all) / 2, len(all) - 1, len(all)} {
			got, err := src.Read(uint64(from))
			if err != nil {
				t.Fatalf("read %d: %v", from, err)
			}
			if len(got) != len(all)-from {
				t.Fatalf("read %d: %d entries, want %d", from, len(got), len(all)-from)
			}
			for j := range got {
				if !bytes.Equal(got[j].TemplateData, all[from+j].TemplateData) {
					t.Fatalf("read %d: entry %d differs", from, from+j)
				}
			}
		}
	}
	if _, err := src.Read(uint64(len(all) + 1)); err == nil {
		t.Fatal("read past the end accepted")
	}
}

func TestSecurityFS(t *testing.T) {
	dir := t.TempDir()
	var all []ima.Entry
	for i := 0; i < 5; i++ {
		all = append(all, entry(t, i))
	}
	os.WriteFile(filepath.Join(dir, "binary_runtime_measurements"), ima.MarshalBinary(all), 0o644)
	os.WriteFile(filepath.Join(dir, "runtime_measurements_count"), []byte("5\n"), 0o644)
	s := NewSecurityFS(dir)
	n, err := s.Count()
	if err != nil || n != 5 {
		t.Fatal(n, err)
	}
	got, err := s.Read(3)
	if err != nil || len(got) != 2 || got[0].Path != "/usr/bin/f3" {
		t.Fatalf("%v %+v", err, got)
	}
	os.WriteFile(filepath.Join(dir, "runtime_measurements_count"), []byte("x"), 0o644)
	if _, err := s.Count(); err == nil {
		t.Fatal("bad count accepted")
	}
}
