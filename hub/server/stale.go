package server

import (
	"container/heap"
	"sync"
	"time"

	"github.com/ratatouille/rat/hub/store"
)

// staleIndex knows when each TRUSTED device last verified, so that the
// once-a-second staleness check costs what expires instead of a scan of
// every device record (which, at 10,000 devices, took longer than its
// period). The workers keep it current on every store write of a device
// (Server.save); it is loaded once from the store at start. It only
// proposes: markStale re-reads the device in its worker before it
// changes anything.
type staleIndex struct {
	mu    sync.Mutex
	after time.Duration
	devs  map[string]*staleEntry
	due   staleHeap // each queued entry once, by the deadline it had when queued
}

type staleEntry struct {
	key, id string
	trusted bool
	last    time.Time // last verified evidence
	queued  bool      // in due
}

type staleItem struct {
	deadline time.Time
	e        *staleEntry
}

type staleHeap []staleItem

func (h staleHeap) Len() int           { return len(h) }
func (h staleHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h staleHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *staleHeap) Push(x any)        { *h = append(*h, x.(staleItem)) }
func (h *staleHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = staleItem{}
	*h = old[:len(old)-1]
	return it
}

func newStaleIndex(after time.Duration) *staleIndex {
	return &staleIndex{after: after, devs: map[string]*staleEntry{}}
}

// note records a device's state as just stored. O(log n) at most; a
// verification of a device already queued costs a map update.
func (x *staleIndex) note(key, id, state string, last time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.devs[key]
	if e == nil {
		e = &staleEntry{key: key, id: id}
		x.devs[key] = e
	}
	e.trusted, e.last = state == store.Trusted, last
	if e.trusted && !e.queued {
		e.queued = true
		heap.Push(&x.due, staleItem{deadline: last.Add(x.after), e: e})
	}
}

// expired returns the TRUSTED devices whose last verification is more than
// the staleness period before now, and forgets them until they are noted
// again. An entry whose device verified since it was queued is queued
// again at its new deadline; one that is no longer TRUSTED is dropped.
func (x *staleIndex) expired(now time.Time) []staleEntry {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []staleEntry
	for len(x.due) > 0 && x.due[0].deadline.Before(now) {
		it := heap.Pop(&x.due).(staleItem)
		e := it.e
		switch d := e.last.Add(x.after); {
		case !e.trusted:
			e.queued = false
		case d.Before(now):
			e.queued = false
			out = append(out, *e)
		default:
			heap.Push(&x.due, staleItem{deadline: d, e: e})
		}
	}
	return out
}

// queued is how many devices wait in the index (for tests).
func (x *staleIndex) queued() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.due)
}
