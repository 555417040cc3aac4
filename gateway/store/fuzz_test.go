package store

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// smallDB builds a small database with 1 KiB pages in the shape callgate
// writes: every bucket, a secret, call records, a nested outbox with a
// sequence (inline and on its own pages).
func smallDB(tb testing.TB) []byte {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 1024})
	if err != nil {
		tb.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, m := range migrations {
			if err := m.Up(tx); err != nil {
				return err
			}
		}
		meta := tx.Bucket(BucketMeta)
		_ = meta.Put(keySchema, binary.BigEndian.AppendUint64(nil, uint64(SchemaVersion())))
		_ = meta.Put([]byte("secret:links"), make([]byte, 32))
		for i := 0; i < 40; i++ {
			_ = tx.Bucket(BucketCalls).Put(callKey(i), callValue(i)[:120])
		}
		ob, _ := tx.Bucket(BucketOutbox).CreateBucketIfNotExists([]byte("retailcrm"))
		p, _ := ob.CreateBucketIfNotExists([]byte("pending"))
		seq, _ := p.NextSequence()
		_ = p.Put(binary.BigEndian.AppendUint64(nil, seq), []byte(`{"op":"history"}`))
		_, err := ob.CreateBucketIfNotExists([]byte("dead"))
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	db.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	w, err := newWalker(data)
	if err != nil {
		tb.Fatal(err)
	}
	return data[:w.m.pgid*uint64(w.ps)] // without the tail bbolt grew ahead
}

// seedImages are the valid small database and damaged variants of it.
func seedImages(tb testing.TB) map[string][]byte {
	good := smallDB(tb)
	ps := 1024
	w, err := newWalker(good)
	if err != nil {
		tb.Fatal(err)
	}
	w.walk()
	leaf, branch := 0, 0
	for id, st := range w.state {
		if st == pgTree {
			switch good[id*ps+8] {
			case flagLeaf:
				leaf = id
			case flagBranch:
				branch = id
			}
		}
	}
	if leaf == 0 || branch == 0 {
		tb.Fatalf("no leaf (%d) or branch (%d) page in the seed", leaf, branch)
	}
	fl := int(w.m.freelist)
	variant := func(fn func(b []byte) []byte) []byte { return fn(append([]byte(nil), good...)) }
	return map[string][]byte{
		"valid":     good,
		"truncated": good[:len(good)*6/10],
		"meta0":     variant(func(b []byte) []byte { copy(b[20:40], "garbage garbage garb"); return b }),
		"leaf":      variant(func(b []byte) []byte { copy(b[leaf*ps+16:], "\xff\xff\xff\xff\x00\x00\xff\xff"); return b }),
		"branch-id": variant(func(b []byte) []byte { b[branch*ps] ^= 0x5a; return b }),
		"freelist":  variant(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[fl*ps+10:], 0xFFFF); return b }),
		"header":    good[:100],
		"zero":      {},
	}
}

// FuzzOpen feeds arbitrary bytes as callgate.db (beside a marker) to
// CheckFile, Open and Repair: none may panic, and a file Open accepts must
// then serve the daemon's reads and writes without panicking either.
func FuzzOpen(f *testing.F) {
	for _, img := range seedImages(f) {
		f.Add(img)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, FileName)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, MarkerName), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := CheckFile(path)
		if err == nil && rep.Sound() != (rep.ProblemCount == 0) {
			t.Fatal("inconsistent report")
		}
		s, err := Open(dir)
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Logf("open: %v", err)
			}
			if len(data) > 0 {
				_, _ = Repair(path, time.Unix(0, 0))
			}
			return
		}
		defer s.Close()
		// What the daemon does once the store is open.
		err = s.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return walkAll(b) })
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Secret("links", 32); err != nil {
			t.Fatal(err)
		}
		err = s.Update(func(tx *bolt.Tx) error {
			for i := 0; i < 50; i++ {
				if err := tx.Bucket(BucketCalls).Put(callKey(1000+i), callValue(i)); err != nil {
					return err
				}
			}
			return tx.Bucket(BucketCalls).Delete(callKey(3))
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func walkAll(b *bolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			if nb := b.Bucket(k); nb != nil {
				return walkAll(nb)
			}
		}
		return nil
	})
}

func TestSeedImagesAreJudgedRight(t *testing.T) {
	for name, img := range seedImages(t) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, FileName), img, 0o600)
		os.WriteFile(filepath.Join(dir, MarkerName), nil, 0o600)
		s, err := Open(dir)
		switch name {
		case "valid", "meta0": // page 1 still holds a valid meta page
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		default:
			if !errors.Is(err, ErrDamaged) {
				t.Errorf("%s: open gave %v, want a DamagedError", name, err)
			}
		}
		if s != nil {
			s.Close()
		}
	}
}
