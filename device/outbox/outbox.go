package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/ratatouille/rat/evidence/protocol"
)

var (
	bucketRecords = []byte("records")
	bucketState   = []byte("state")
	keyState      = []byte("state")
)

// State is the agent's persistent state.
type State struct {
	// Enrollment.
	Enrolled bool   `cbor:"1,keyasint"`
	DeviceID string `cbor:"2,keyasint"`
	Fleet    string `cbor:"3,keyasint"`
	AKPublic []byte `cbor:"4,keyasint,omitempty"`

	// Chain: the next record's sequence number and the digest of the last
	// quote made (sent or not).
	NextSeq   uint64 `cbor:"5,keyasint"`
	QuotePrev []byte `cbor:"6,keyasint,omitempty"`
	// Nonce is the newest challenge from the hub.
	Nonce []byte `cbor:"7,keyasint,omitempty"`

	// IMA position: entries of boot BootID covered by the last record, and
	// the sha256 PCR 10 value they replay to.
	BootID   string `cbor:"8,keyasint,omitempty"`
	IMACount uint64 `cbor:"9,keyasint"`
	PCR10    []byte `cbor:"10,keyasint,omitempty"`

	// Thinned counts heartbeats dropped in total, for the operator.
	Thinned uint64 `cbor:"11,keyasint,omitempty"`
	// SentEventLog says the firmware event log went out for BootID.
	SentEventLog bool `cbor:"12,keyasint,omitempty"`
}

// Record is a pending evidence record.
type Record struct {
	Seq uint64
	// Heartbeat records carry no IMA entries and may be thinned.
	Heartbeat bool
	// Prev is the chain link the record's claims carry (kept so that a
	// replacement can take it over).
	Prev []byte
	Msg  []byte // the encoded protocol.Evidence
}

type stored struct {
	Heartbeat bool   `cbor:"1,keyasint"`
	Prev      []byte `cbor:"2,keyasint,omitempty"`
	Msg       []byte `cbor:"3,keyasint"`
}

// Outbox is the durable queue.
type Outbox struct {
	db  *bolt.DB
	max int
}

// Option configures an Outbox.
type Option func(*Outbox)

// WithMaxRecords bounds the pending records (default 10,000: a day of
// heartbeats at the default 10 s interval, plus headroom).
func WithMaxRecords(n int) Option { return func(o *Outbox) { o.max = n } }

// Open opens or creates the outbox at path.
func Open(path string, opts ...Option) (*Outbox, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("outbox: open %s: %w", path, err)
	}
	o := &Outbox{db: db, max: 10000}
	for _, opt := range opts {
		opt(o)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketRecords); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketState)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("outbox: init %s: %w", path, err)
	}
	return o, nil
}

// Close closes the file.
func (o *Outbox) Close() error { return o.db.Close() }

// State returns the stored state (zero if none).
func (o *Outbox) State() (State, error) {
	var st State
	err := o.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketState).Get(keyState)
		if b == nil {
			return nil
		}
		return cbor.Unmarshal(b, &st)
	})
	if err != nil {
		return State{}, fmt.Errorf("outbox: state: %w", err)
	}
	return st, nil
}

// SaveState stores st alone.
func (o *Outbox) SaveState(st State) error {
	return o.db.Update(func(tx *bolt.Tx) error { return putState(tx, st) })
}

func putState(tx *bolt.Tx, st State) error {
	b, err := cbor.Marshal(st)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketState).Put(keyState, b)
}

func seqKey(s uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], s)
	return k[:]
}

// Newest returns the newest pending record, if any.
func (o *Outbox) Newest() (*Record, error) {
	var r *Record
	err := o.db.View(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketRecords).Cursor().Last()
		if k == nil {
			return nil
		}
		var err error
		r, err = decode(k, v)
		return err
	})
	return r, err
}

// Append stores recs and st in one transaction. If replace is non-zero,
// the pending record with that sequence number (an unsent heartbeat that
// the caller thinned) is deleted in the same transaction.
func (o *Outbox) Append(recs []Record, st State, replace uint64) error {
	return o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		if replace != 0 {
			if err := b.Delete(seqKey(replace)); err != nil {
				return err
			}
		}
		for _, r := range recs {
			v, err := cbor.Marshal(stored{Heartbeat: r.Heartbeat, Prev: r.Prev, Msg: r.Msg})
			if err != nil {
				return err
			}
			if err := b.Put(seqKey(r.Seq), v); err != nil {
				return err
			}
		}
		return putState(tx, st)
	})
}

// Full reports whether the outbox holds its maximum of records.
func (o *Outbox) Full() (bool, error) {
	n, err := o.Len()
	return n >= o.max, err
}

// Len is the number of pending records.
func (o *Outbox) Len() (int, error) {
	var n int
	err := o.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketRecords).Stats().KeyN
		return nil
	})
	return n, err
}

// Pending returns up to limit pending records with Seq > after, in order.
func (o *Outbox) Pending(after uint64, limit int) ([]Record, error) {
	var out []Record
	err := o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			r, err := decode(k, v)
			if err != nil {
				return err
			}
			out = append(out, *r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: pending: %w", err)
	}
	return out, nil
}

// Ack deletes every record with Seq ≤ seq: the hub has processed them.
func (o *Outbox) Ack(seq uint64) error {
	return o.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq; k, _ = c.Next() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// All calls fn for every pending record in order (for offline export).
func (o *Outbox) All(fn func(Record) error) error {
	return o.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			r, err := decode(k, v)
			if err != nil {
				return err
			}
			return fn(*r)
		})
	})
}

func decode(k, v []byte) (*Record, error) {
	if len(k) != 8 {
		return nil, errors.New("outbox: bad key")
	}
	var s stored
	if err := cbor.Unmarshal(v, &s); err != nil {
		return nil, fmt.Errorf("outbox: record %x: %w", k, err)
	}
	return &Record{Seq: binary.BigEndian.Uint64(k), Heartbeat: s.Heartbeat, Prev: s.Prev, Msg: s.Msg}, nil
}

// Decode decodes a record's message.
func (r Record) Decode() (*protocol.Evidence, error) {
	var e protocol.Evidence
	if err := protocol.Unmarshal(r.Msg, &e); err != nil {
		return nil, err
	}
	return &e, nil
}
