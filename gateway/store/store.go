// Package store owns callgate's bbolt database: one file under data_dir,
// locked against a second instance, with a schema version and ordered
// migrations.
package store

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// FileName is the database file inside data_dir.
const FileName = "callgate.db"

// Bucket names. Each part of callgate keeps its data in its own bucket.
var (
	BucketMeta     = []byte("meta")
	BucketBindings = []byte("bindings")
	BucketCalls    = []byte("calls")
	// BucketOutbox holds the CRM outboxes (crm/outbox.Bucket).
	BucketOutbox = []byte("crm_outbox")
	// BucketArchiveQueue holds the recordings waiting to be uploaded to
	// the archive; BucketArchived where each archived one is.
	BucketArchiveQueue = []byte("archive_queue")
	BucketArchived     = []byte("archived")
)

var keySchema = []byte("schema_version")

// ErrLocked means another process holds the database.
var ErrLocked = errors.New("database is locked by another callgate process")

// Migration upgrades the schema from version N-1 to N, where N is its index+1
// in the migrations list. It runs inside one write transaction.
type Migration struct {
	Name string
	Up   func(tx *bolt.Tx) error
}

// migrations is append-only: released versions never change.
var migrations = []Migration{
	{Name: "create meta and bindings buckets", Up: func(tx *bolt.Tx) error {
		for _, b := range [][]byte{BucketMeta, BucketBindings} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}},
	{Name: "create calls bucket", Up: func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(BucketCalls)
		return err
	}},
	{Name: "create CRM outbox bucket", Up: func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(BucketOutbox)
		return err
	}},
	{Name: "create archive buckets", Up: func(tx *bolt.Tx) error {
		for _, b := range [][]byte{BucketArchiveQueue, BucketArchived} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}},
}

// initialMmapSize is how much of the file bbolt maps at open: 8 GiB of
// address space (on 64-bit systems; nothing is read in until used). A backup
// is one long read transaction, and bbolt cannot remap a growing file while
// one is open: without room to grow, every write (call records, outboxes,
// registrations) would wait for the copy to end. etcd maps 10 GiB for the
// same reason.
const initialMmapSize = (8 << 30) * (strconv.IntSize / 64)

// SchemaVersion is the version this build writes.
func SchemaVersion() int { return len(migrations) }

// Store is the open database.
type Store struct {
	db   *bolt.DB
	path string
}

// Open opens (creating if needed) the database in dir and migrates it. It
// fails at once with ErrLocked if another process has it open, and with a
// *DamagedError (errors.Is ErrDamaged) if the file is damaged, or missing or
// empty where a database existed before.
func Open(dir string) (*Store, error) {
	return open(dir, migrations)
}

// OpenWith is Open with options.
func OpenWith(dir string, o Options) (*Store, error) {
	return openWith(dir, migrations, o)
}

func open(dir string, migs []Migration) (*Store, error) {
	return openWith(dir, migs, Options{})
}

func openWith(dir string, migs []Migration, o Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data_dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	if err := precheck(dir, path, o); err != nil {
		return nil, err
	}
	var db *bolt.DB
	// The check above read every page bbolt will; the guard is for what it
	// cannot foresee, so a corrupt file still ends in an error, not a crash.
	err := guard("open "+path, func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 200 * time.Millisecond, InitialMmapSize: initialMmapSize})
		return err
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w (is callgate already running with data_dir %s?)", path, ErrLocked, dir)
	}
	if err != nil {
		if isCorrupt(err) {
			return nil, &DamagedError{Path: path, Kind: DamageCorrupt, Problems: []string{err.Error()}, Count: 1}
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	if err := guard("migrate "+path, func() error { return s.migrate(migs) }); err != nil {
		_ = guard("close "+path, db.Close)
		if isCorrupt(err) {
			return nil, &DamagedError{Path: path, Kind: DamageCorrupt, Problems: []string{err.Error()}, Count: 1}
		}
		return nil, err
	}
	if err := writeMarker(dir); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(migs []Migration) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(BucketMeta)
		if err != nil {
			return err
		}
		have := 0
		if v := meta.Get(keySchema); len(v) == 8 {
			have = int(binary.BigEndian.Uint64(v))
		}
		if have > len(migs) {
			return fmt.Errorf("database %s has schema version %d, newer than this callgate understands (%d): upgrade callgate or restore a backup", s.path, have, len(migs))
		}
		for v := have; v < len(migs); v++ {
			if err := migs[v].Up(tx); err != nil {
				return fmt.Errorf("migrate %s to schema %d (%s): %w", s.path, v+1, migs[v].Name, err)
			}
		}
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], uint64(len(migs)))
		return meta.Put(keySchema, buf[:])
	})
}

// Version reads the schema version stored in the database.
func (s *Store) Version() (int, error) {
	v := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(BucketMeta); b != nil {
			if raw := b.Get(keySchema); len(raw) == 8 {
				v = int(binary.BigEndian.Uint64(raw))
			}
		}
		return nil
	})
	return v, err
}

// Path is the database file's path.
func (s *Store) Path() string { return s.path }

// Update runs fn in a read-write transaction.
func (s *Store) Update(fn func(tx *bolt.Tx) error) error { return s.db.Update(fn) }

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(tx *bolt.Tx) error) error { return s.db.View(fn) }

// Backup writes a consistent copy of the database to w while it stays in use.
func (s *Store) Backup(w io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Close flushes and closes the database, releasing the lock.
func (s *Store) Close() error { return s.db.Close() }

// Secret returns the random n-byte secret kept under name in the meta
// bucket, creating it on first use. Keys that must outlive restarts (the
// recording-link signing key) live here.
func (s *Store) Secret(name string, n int) ([]byte, error) {
	var out []byte
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(BucketMeta)
		k := []byte("secret:" + name)
		if v := b.Get(k); len(v) == n {
			out = append([]byte(nil), v...)
			return nil
		}
		out = make([]byte, n)
		if _, err := rand.Read(out); err != nil {
			return err
		}
		return b.Put(k, out)
	})
	if err != nil {
		return nil, fmt.Errorf("store secret %s: %w", name, err)
	}
	return out, nil
}

// Once returns the value kept under name in the meta bucket, storing value
// there first if there is none (e.g. when a CRM connector was first
// enabled).
func (s *Store) Once(name string, value []byte) ([]byte, error) {
	var out []byte
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(BucketMeta)
		k := []byte("once:" + name)
		if v := b.Get(k); v != nil {
			out = append([]byte(nil), v...)
			return nil
		}
		out = value
		return b.Put(k, value)
	})
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", name, err)
	}
	return out, nil
}

// State returns the value kept under name in the meta bucket (nil if none):
// small marks a part keeps across restarts, e.g. how far a CRM poll got.
func (s *Store) State(name string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(BucketMeta).Get([]byte("state:" + name)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", name, err)
	}
	return out, nil
}

// SetState keeps value under name in the meta bucket.
func (s *Store) SetState(name string, value []byte) error {
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(BucketMeta).Put([]byte("state:"+name), value) })
	if err != nil {
		return fmt.Errorf("store %s: %w", name, err)
	}
	return nil
}
