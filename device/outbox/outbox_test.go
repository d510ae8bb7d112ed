package outbox

import (
	"path/filepath"
	"testing"
)

func rec(seq uint64, hb bool) Record {
	return Record{Seq: seq, Heartbeat: hb, Prev: []byte{byte(seq)}, Msg: []byte{0xa1, 0x01, byte(seq)}}
}

// TestOutbox: records and state survive a reopen (what a power loss after
// a commit leaves), come back in order, go only when acknowledged, and a
// replacement deletes exactly the record it replaces in the same commit.
func TestOutbox(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, err := Open(path, WithMaxRecords(3))
	if err != nil {
		t.Fatal(err)
	}
	st := State{Enrolled: true, DeviceID: "d", NextSeq: 4, IMACount: 7}
	if err := o.Append([]Record{rec(1, false), rec(2, true), rec(3, true)}, st, 0); err != nil {
		t.Fatal(err)
	}
	if full, _ := o.Full(); !full {
		t.Fatal("3 of 3 records is full")
	}
	o.Close()

	o, err = Open(path, WithMaxRecords(3))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	got, err := o.State()
	if err != nil || got.NextSeq != 4 || got.IMACount != 7 || !got.Enrolled {
		t.Fatalf("state after reopen: %+v %v", got, err)
	}
	p, err := o.Pending(0, 10)
	if err != nil || len(p) != 3 || p[0].Seq != 1 || p[2].Seq != 3 || !p[1].Heartbeat || p[0].Heartbeat {
		t.Fatalf("pending: %+v %v", p, err)
	}
	if p, _ := o.Pending(1, 1); len(p) != 1 || p[0].Seq != 2 {
		t.Fatalf("pending after 1, limit 1: %+v", p)
	}
	// Thinning: record 4 replaces 3.
	st.NextSeq = 5
	if err := o.Append([]Record{rec(4, true)}, st, 3); err != nil {
		t.Fatal(err)
	}
	n, _ := o.Newest()
	if n == nil || n.Seq != 4 {
		t.Fatalf("newest: %+v", n)
	}
	if l, _ := o.Len(); l != 3 {
		t.Fatalf("len after replace = %d", l)
	}
	if err := o.Ack(2); err != nil {
		t.Fatal(err)
	}
	p, _ = o.Pending(0, 10)
	if len(p) != 1 || p[0].Seq != 4 {
		t.Fatalf("after ack 2: %+v", p)
	}
	var all []uint64
	_ = o.All(func(r Record) error { all = append(all, r.Seq); return nil })
	if len(all) != 1 || all[0] != 4 {
		t.Fatalf("all: %v", all)
	}
	// A second process cannot open the same outbox while this one holds it.
	if _, err := Open(path); err == nil {
		t.Fatal("outbox opened twice")
	}
}
