package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// fillDB creates a database in dir with n call-like records, a secret and a
// nested outbox bucket with a sequence, as callgate writes them.
func fillDB(t testing.TB, dir string, n int) {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Secret("links", 32); err != nil {
		t.Fatal(err)
	}
	for done := 0; done < n; {
		err := s.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(BucketCalls)
			for i := 0; i < 5000 && done < n; i++ {
				if err := b.Put(callKey(done), callValue(done)); err != nil {
					return err
				}
				done++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	err = s.Update(func(tx *bolt.Tx) error {
		ob, err := tx.Bucket(BucketOutbox).CreateBucketIfNotExists([]byte("retailcrm"))
		if err != nil {
			return err
		}
		p, err := ob.CreateBucketIfNotExists([]byte("pending"))
		if err != nil {
			return err
		}
		for i := 0; i < 3; i++ {
			seq, _ := p.NextSequence()
			if err := p.Put(binary.BigEndian.AppendUint64(nil, seq), []byte(`{"op":"history"}`)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func callKey(i int) []byte {
	k := binary.BigEndian.AppendUint64(nil, uint64(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()+int64(i)*int64(time.Minute)))
	return append(k, fmt.Sprintf("call-%08d", i)...)
}

func callValue(i int) []byte {
	return []byte(fmt.Sprintf(`{"id":"call-%08d","direction":"inbound","number":"+7916%07d","employee":"ivanov","result":"answered",`+
		`"legs":[{"extension":"101","answered":true}],"rtp":{"outside":{"packets":%d},"employee":{"packets":%d}},"pad":"%s"}`,
		i, i, i*50, i*49, strings.Repeat("x", 200)))
}

// treePages lists the branch and leaf pages of the database at path.
func treePages(t testing.TB, path string) []int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ids []int
	_ = db.View(func(tx *bolt.Tx) error {
		for id := 2; ; {
			p, err := tx.Page(id)
			if err != nil || p == nil {
				return err
			}
			if p.Type == "leaf" || p.Type == "branch" {
				ids = append(ids, id)
			}
			id += 1
			if p.Type != "free" {
				id += p.OverflowCount
			}
		}
	})
	return ids
}

// damage applies one kind of damage to the database file in dir.
func damage(t testing.TB, dir, kind string, seed uint64) {
	t.Helper()
	path := filepath.Join(dir, FileName)
	rng := rand.New(rand.NewPCG(seed, 7))
	switch kind {
	case "truncated":
		// Cut inside the pages in use, not the tail bbolt grew ahead of them.
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		var used int64
		_ = db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
		db.Close()
		if err := os.Truncate(path, used*6/10+123); err != nil {
			t.Fatal(err)
		}
	case "random-pages":
		ids := treePages(t, path)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		junk := make([]byte, 4096)
		for i := 0; i < 3; i++ {
			for j := range junk {
				junk[j] = byte(rng.Uint32())
			}
			id := ids[rng.IntN(len(ids))]
			if _, err := f.WriteAt(junk, int64(id)*4096); err != nil {
				t.Fatal(err)
			}
		}
	case "zero":
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
	case "missing":
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown damage %q", kind)
	}
}

func TestOpenRefusesDamagedDatabases(t *testing.T) {
	for _, kind := range []string{"truncated", "random-pages", "zero", "missing"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			fillDB(t, dir, 3000)
			damage(t, dir, kind, 1)
			_, err := Open(dir)
			var de *DamagedError
			if !errors.As(err, &de) || !errors.Is(err, ErrDamaged) {
				t.Fatalf("open: %v, want a DamagedError", err)
			}
			want := map[string]string{"truncated": DamageCorrupt, "random-pages": DamageCorrupt, "zero": DamageEmpty, "missing": DamageMissing}[kind]
			if de.Kind != want || !strings.Contains(err.Error(), filepath.Join(dir, FileName)) {
				t.Fatalf("kind %s, message %q", de.Kind, err)
			}
			if kind == "truncated" && !strings.Contains(err.Error(), "truncated") {
				t.Fatalf("truncation not named: %q", err)
			}
			// The file is left as it was, for repair or a backup restore.
			if kind == "zero" {
				if fi, err := os.Stat(filepath.Join(dir, FileName)); err != nil || fi.Size() != 0 {
					t.Fatalf("empty file changed: %v %v", fi, err)
				}
			}
		})
	}
}

func TestInitAcceptsEmptyOrMissingOnly(t *testing.T) {
	for _, kind := range []string{"zero", "missing"} {
		dir := t.TempDir()
		fillDB(t, dir, 10)
		damage(t, dir, kind, 1)
		s, err := OpenWith(dir, Options{Init: true})
		if err != nil {
			t.Fatalf("%s with Init: %v", kind, err)
		}
		s.Close()
		if s, err = Open(dir); err != nil { // now a valid, empty database
			t.Fatalf("%s reopened: %v", kind, err)
		}
		s.Close()
	}
	dir := t.TempDir()
	fillDB(t, dir, 3000)
	damage(t, dir, "truncated", 1)
	if _, err := OpenWith(dir, Options{Init: true}); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Init opened a damaged database: %v", err)
	}
}

func TestFreshInstallWritesMarker(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, MarkerName)); err != nil {
		t.Fatalf("no marker: %v", err)
	}
	// A database from before markers existed gets one on its next start.
	os.Remove(filepath.Join(dir, MarkerName))
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, MarkerName)); err != nil {
		t.Fatalf("no marker after upgrade: %v", err)
	}
}

func TestCheckFileReportsBucketsAndDamage(t *testing.T) {
	dir := t.TempDir()
	fillDB(t, dir, 3000)
	path := filepath.Join(dir, FileName)
	rep, err := CheckFile(path)
	if err != nil || !rep.Sound() {
		t.Fatalf("sound database: %v %+v", err, rep)
	}
	keys := map[string]int{}
	for _, b := range rep.Buckets {
		keys[b.Name] = b.Keys
	}
	if keys["calls"] != 3000 || keys["crm_outbox/retailcrm/pending"] != 3 || keys["meta"] < 2 || rep.Schema != SchemaVersion() {
		t.Fatalf("buckets %v schema %d", keys, rep.Schema)
	}
	damage(t, dir, "random-pages", 2)
	rep, err = CheckFile(path)
	if err != nil || rep.Sound() || rep.DamagedPages == 0 {
		t.Fatalf("damaged database: %v %+v", err, rep)
	}
	// A running callgate holds the file: the check says so instead of
	// reading pages mid-write.
	dir2 := t.TempDir()
	s, err := Open(dir2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := CheckFile(filepath.Join(dir2, FileName)); !errors.Is(err, ErrLocked) {
		t.Fatalf("check of an open database: %v", err)
	}
}

func TestRepairSavesWhatIsReadable(t *testing.T) {
	for _, kind := range []string{"truncated", "random-pages"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			fillDB(t, dir, 3000)
			path := filepath.Join(dir, FileName)
			damage(t, dir, kind, 3)
			now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
			rr, err := Repair(path, now)
			if err != nil {
				t.Fatal(err)
			}
			if rr.Damaged != path+".damaged-20261202T080000Z" {
				t.Fatalf("damaged file kept as %s", rr.Damaged)
			}
			if _, err := os.Stat(rr.Damaged); err != nil {
				t.Fatalf("damaged file not kept: %v", err)
			}
			s, err := Open(dir)
			if err != nil {
				t.Fatalf("repaired database does not open: %v", err)
			}
			defer s.Close()
			calls, bad := 0, 0
			_ = s.View(func(tx *bolt.Tx) error {
				return tx.Bucket(BucketCalls).ForEach(func(k, v []byte) error {
					calls++
					var i int
					if _, err := fmt.Sscanf(string(k[8:]), "call-%08d", &i); err != nil || string(v) != string(callValue(i)) {
						bad++
					}
					return nil
				})
			})
			min := map[string]int{"truncated": 1000, "random-pages": 2900}[kind]
			if calls < min || bad > 0 {
				t.Fatalf("%d calls saved (want >= %d), %d altered", calls, min, bad)
			}
			if seq := outboxSeq(s); kind == "random-pages" && seq != 3 {
				t.Fatalf("outbox sequence %d, want 3", seq)
			}
			s.Close()
			if _, err := Repair(path, now); !errors.Is(err, ErrSound) {
				t.Fatalf("second repair: %v", err)
			}
		})
	}
}

func outboxSeq(s *Store) uint64 {
	var seq uint64
	_ = s.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(BucketOutbox).Bucket([]byte("retailcrm")); b != nil {
			if p := b.Bucket([]byte("pending")); p != nil {
				seq = p.Sequence()
			}
		}
		return nil
	})
	return seq
}

// BenchmarkOpenCheck measures the structural check Open runs on every start,
// on a database of 100,000 call records.
func BenchmarkOpenCheck(b *testing.B) {
	dir := b.TempDir()
	fillDB(b, dir, 100000)
	path := filepath.Join(dir, FileName)
	fi, _ := os.Stat(path)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := quickCheck(path)
		if err != nil || !rep.Sound() {
			b.Fatal(err, rep.Problems)
		}
	}
	b.ReportMetric(float64(fi.Size())/(1<<20), "db-MiB")
}

// BenchmarkBboltCheck is bbolt's own full consistency check on the same
// database, which check-db runs after the structural walk: for comparison.
func BenchmarkBboltCheck(b *testing.B) {
	dir := b.TempDir()
	fillDB(b, dir, 100000)
	path := filepath.Join(dir, FileName)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := CheckFile(path)
		if err != nil || !rep.Sound() {
			b.Fatal(err, rep.Problems)
		}
	}
}
