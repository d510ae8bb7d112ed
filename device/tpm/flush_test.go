package tpm

import "testing"

// TestFlushStaleAfterKilledUsers: on swtpm (no resource manager) each
// "killed" agent leaves its AK and EK loaded; without FlushStale the third
// start runs out of object slots, with it every start works.
func TestFlushStaleAfterKilledUsers(t *testing.T) {
	addr := startSwtpm(t)
	leak := func(flush bool) error {
		tp, err := Open(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer tp.Close() // closes the connection only, as a SIGKILL would
		if flush {
			if err := tp.FlushStale(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tp.CreateAK(); err != nil {
			return err
		}
		_, err = tp.CreateEK()
		return err
	}
	var failed bool
	for i := 0; i < 3; i++ {
		if leak(false) != nil {
			failed = true
			break
		}
	}
	if !failed {
		t.Fatal("three unflushed starts succeeded: the test no longer shows the leak")
	}
	for i := 0; i < 3; i++ {
		if err := leak(true); err != nil {
			t.Fatalf("start %d after FlushStale: %v", i, err)
		}
	}
}
