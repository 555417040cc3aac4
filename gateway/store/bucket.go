package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Bucket is one bucket of the store seen as a map from string keys to
// values, for parts that persist behind without knowing bbolt (the
// registrations: sip/location).
type Bucket struct {
	s    *Store
	name []byte
}

// Bucket returns the bucket called name (one of the Bucket* names, which
// every open store has).
func (s *Store) Bucket(name []byte) Bucket { return Bucket{s: s, name: name} }

// Each calls fn with every key and value in the bucket, in key order; an
// error from fn stops it. The value is only valid during the call.
func (b Bucket) Each(fn func(key string, value []byte) error) error {
	err := b.s.View(func(tx *bolt.Tx) error {
		return tx.Bucket(b.name).ForEach(func(k, v []byte) error { return fn(string(k), v) })
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", b.name, err)
	}
	return nil
}

// Apply writes changes in one transaction: each key gets its value, or
// is deleted when the value is nil.
func (b Bucket) Apply(changes map[string][]byte) error {
	err := b.s.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(b.name)
		for k, v := range changes {
			var err error
			if v == nil {
				err = bk.Delete([]byte(k))
			} else {
				err = bk.Put([]byte(k), v)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", b.name, err)
	}
	return nil
}

// Get returns the value of key (nil when there is none).
func (b Bucket) Get(key string) ([]byte, error) {
	var out []byte
	err := b.s.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(b.name).Get([]byte(key)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", b.name, err)
	}
	return out, nil
}
