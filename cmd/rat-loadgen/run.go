package main

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ratatouille/rat/evidence/protocol"
	"github.com/ratatouille/rat/hub/store"
)

// collector records each ack: its latency from the publish of the record
// it answers, and whether the hub accepted the record.
type collector struct {
	accepted, rejected, trusted, notTrusted, unknown atomic.Int64
	mu                                               sync.Mutex
	lat                                              []time.Duration
	last                                             time.Time
	done                                             chan struct{}
	want                                             int64
	firstReason                                      atomic.Value
}

func newCollector(want int) *collector {
	return &collector{done: make(chan struct{}), want: int64(want), lat: make([]time.Duration, 0, want)}
}

func (c *collector) onAck(d *simDevice, data []byte) {
	now := time.Now()
	var a protocol.Ack
	if err := protocol.Unmarshal(data, &a); err != nil {
		c.unknown.Add(1)
		return
	}
	d.mu.Lock()
	sent, ok := d.sent[a.Seq]
	delete(d.sent, a.Seq)
	d.mu.Unlock()
	if !ok {
		c.unknown.Add(1) // a duplicate ack, or one for a record not sent by this run
		return
	}
	if a.Rejected {
		c.rejected.Add(1)
		c.firstReason.CompareAndSwap(nil, fmt.Sprintf("%s seq %d: %s", d.id, a.Seq, a.Reason))
	} else {
		c.accepted.Add(1)
	}
	if a.State == store.Trusted {
		c.trusted.Add(1)
	} else {
		c.notTrusted.Add(1)
		c.firstReason.CompareAndSwap(nil, fmt.Sprintf("%s seq %d: state %s", d.id, a.Seq, a.State))
	}
	c.mu.Lock()
	c.lat = append(c.lat, now.Sub(sent))
	c.last = now
	n := int64(len(c.lat))
	c.mu.Unlock()
	select {
	case d.acked <- struct{}{}:
	default:
	}
	if n == c.want {
		close(c.done)
	}
}

// result is one run's numbers.
type result struct {
	Broker                      string
	Devices, PerDevice, Offered int
	Mode                        string
	Sent                        int
	Accepted, Rejected          int64
	Trusted, NotTrusted         int64
	FirstProblem                string
	Wall                        time.Duration
	Rate                        float64 // accepted attestations per second
	P50, P99, Max               time.Duration
	GenCPU                      time.Duration // this process's CPU during the run (generator, plus the hub when in-process)
	HubCPU                      time.Duration // the hub process's CPU during the run, when it is a child
	BrokerCPU                   time.Duration // the external broker's CPU, when known
	// BareBefore and BareAfter are the CPU of one bare ECDSA P-256
	// verification on the hub's CPUs just before and after the run
	// (calibrate.go); BareVerify is their mean.
	BareBefore, BareAfter, BareVerify time.Duration
}

// publishAll sends every device's records. rate > 0: open loop, records
// leave at rate per second in total, round-robin over the devices (record k
// of every device, then record k+1), whatever the acks do. rate == 0:
// closed loop, each device publishes its next record when the previous one
// is acknowledged, as a real agent does.
func publishAll(devs []*simDevice, rate int, qos byte, c *collector, timeout time.Duration) (int, error) {
	sent := 0
	pub := func(d *simDevice) error {
		i := d.next
		d.next++
		d.mu.Lock()
		d.sent[uint64(i+1)] = time.Now()
		d.mu.Unlock()
		t := d.c.Publish(protocol.UpTopic(fleet, d.id, protocol.KindEvidence), qos, false, d.records[i])
		_ = t // delivery is confirmed by the hub's ack, which is what is measured
		return nil
	}
	if rate > 0 {
		interval := time.Second / time.Duration(rate)
		start := time.Now()
		perDev := len(devs[0].records)
		for k := 0; k < perDev; k++ {
			for _, d := range devs {
				if k >= len(d.records) {
					continue
				}
				due := start.Add(time.Duration(sent) * interval)
				if w := time.Until(due); w > 0 {
					time.Sleep(w)
				}
				if err := pub(d); err != nil {
					return sent, err
				}
				sent++
			}
		}
		return sent, nil
	}
	var wg sync.WaitGroup
	var total atomic.Int64
	deadline := time.After(timeout)
	stop := make(chan struct{})
	for _, d := range devs {
		wg.Add(1)
		go func(d *simDevice) {
			defer wg.Done()
			for d.next < len(d.records) {
				_ = pub(d)
				total.Add(1)
				select {
				case <-d.acked:
				case <-stop:
					return
				}
			}
		}(d)
	}
	go func() {
		select {
		case <-deadline:
		case <-c.done:
		}
		close(stop)
	}()
	wg.Wait()
	return int(total.Load()), nil
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (r *result) finish(c *collector, t0 time.Time) {
	c.mu.Lock()
	lat := append([]time.Duration(nil), c.lat...)
	last := c.last
	c.mu.Unlock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r.Accepted, r.Rejected = c.accepted.Load(), c.rejected.Load()
	r.Trusted, r.NotTrusted = c.trusted.Load(), c.notTrusted.Load()
	if v, ok := c.firstReason.Load().(string); ok {
		r.FirstProblem = v
	}
	if last.Before(t0) {
		last = time.Now()
	}
	r.Wall = last.Sub(t0)
	if r.Wall > 0 {
		r.Rate = float64(r.Accepted) / r.Wall.Seconds()
	}
	r.P50, r.P99 = percentile(lat, 0.50), percentile(lat, 0.99)
	if len(lat) > 0 {
		r.Max = lat[len(lat)-1]
	}
}
