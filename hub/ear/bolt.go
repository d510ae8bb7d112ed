package ear

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketTokens  = []byte("ear.tokens")
	bucketDevices = []byte("ear.revoked-devices")
)

// BoltPersister keeps token records and device revocations in a bbolt file.
// The hub may pass its own *bolt.DB so everything lives in one store.
type BoltPersister struct {
	db *bolt.DB
}

// OpenBoltPersister opens (creating, mode 0600) a bbolt file at path.
func OpenBoltPersister(path string) (*BoltPersister, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("ear: opening %s: %w", path, err)
	}
	p, err := NewBoltPersister(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	return p, nil
}

// NewBoltPersister uses an open database, creating its buckets.
func NewBoltPersister(db *bolt.DB) (*BoltPersister, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTokens, bucketDevices} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ear: creating buckets: %w", err)
	}
	return &BoltPersister{db: db}, nil
}

// Close closes the database.
func (p *BoltPersister) Close() error { return p.db.Close() }

func (p *BoltPersister) put(bucket []byte, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return p.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(key), b) })
}

func (p *BoltPersister) del(bucket []byte, key string) error {
	return p.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete([]byte(key)) })
}

// PutToken implements Persister.
func (p *BoltPersister) PutToken(t TokenRecord) error {
	if err := p.put(bucketTokens, t.ID, t); err != nil {
		return fmt.Errorf("ear: storing token %s: %w", t.ID, err)
	}
	return nil
}

// DeleteToken implements Persister.
func (p *BoltPersister) DeleteToken(id string) error {
	if err := p.del(bucketTokens, id); err != nil {
		return fmt.Errorf("ear: deleting token %s: %w", id, err)
	}
	return nil
}

// PutDevice implements Persister.
func (p *BoltPersister) PutDevice(d DeviceRecord) error {
	if err := p.put(bucketDevices, d.DeviceID, d); err != nil {
		return fmt.Errorf("ear: storing revocation of %s: %w", d.DeviceID, err)
	}
	return nil
}

// DeleteDevice implements Persister.
func (p *BoltPersister) DeleteDevice(id string) error {
	if err := p.del(bucketDevices, id); err != nil {
		return fmt.Errorf("ear: deleting revocation of %s: %w", id, err)
	}
	return nil
}

// Load implements Persister. A record that does not decode is an error:
// dropping it could silently un-revoke a device.
func (p *BoltPersister) Load() ([]TokenRecord, []DeviceRecord, error) {
	var toks []TokenRecord
	var devs []DeviceRecord
	err := p.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			var t TokenRecord
			if err := json.Unmarshal(v, &t); err != nil || t.ID != string(k) {
				return fmt.Errorf("token record %q does not decode", k)
			}
			toks = append(toks, t)
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
			var d DeviceRecord
			if err := json.Unmarshal(v, &d); err != nil || d.DeviceID != string(k) {
				return fmt.Errorf("revocation record %q does not decode", k)
			}
			devs = append(devs, d)
			return nil
		})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("ear: loading: %w", err)
	}
	return toks, devs, nil
}
