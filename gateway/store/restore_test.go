package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// backupWith makes a backup file holding a binding named key.
func backupWith(t *testing.T, key string) string {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(func(tx *bolt.Tx) error { return tx.Bucket(BucketBindings).Put([]byte(key), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := s.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func hasBinding(t *testing.T, dir, key string) bool {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	found := false
	_ = s.View(func(tx *bolt.Tx) error { found = tx.Bucket(BucketBindings).Get([]byte(key)) != nil; return nil })
	return found
}

func TestRestoreIntoAFreshDataDir(t *testing.T) {
	src := backupWith(t, "alice")
	dir := filepath.Join(t.TempDir(), "new")
	rr, err := Restore(dir, src, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if rr.Kept != "" || rr.Schema != SchemaVersion() || rr.Path != filepath.Join(dir, FileName) {
		t.Fatalf("%+v", rr)
	}
	if _, err := os.Stat(filepath.Join(dir, MarkerName)); err != nil {
		t.Fatal("no marker: a later vanished database would go unnoticed")
	}
	if fi, _ := os.Stat(rr.Path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if !hasBinding(t, dir, "alice") {
		t.Fatal("restored database lacks the backup's data")
	}
}

func TestRestoreKeepsTheOldDatabase(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Update(func(tx *bolt.Tx) error { return tx.Bucket(BucketBindings).Put([]byte("old"), []byte("v")) })
	s.Close()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rr, err := Restore(dir, backupWith(t, "first"), now)
	if err != nil {
		t.Fatal(err)
	}
	if rr.Kept != filepath.Join(dir, FileName+KeptSuffix) {
		t.Fatalf("kept as %q", rr.Kept)
	}
	// A second restore does not overwrite what the first one kept.
	rr2, err := Restore(dir, backupWith(t, "second"), now)
	if err != nil {
		t.Fatal(err)
	}
	if rr2.Kept != rr.Kept+"-20260301T120000Z" {
		t.Fatalf("second restore kept as %q", rr2.Kept)
	}
	if !hasBinding(t, dir, "second") || hasBinding(t, dir, "first") {
		t.Fatal("not the second backup")
	}
	for kept, key := range map[string]string{rr.Kept: "old", rr2.Kept: "first"} {
		kd := t.TempDir()
		b, _ := os.ReadFile(kept)
		os.WriteFile(filepath.Join(kd, FileName), b, 0o600)
		if !hasBinding(t, kd, key) {
			t.Fatalf("%s does not hold %q", kept, key)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, FileName+".restore-tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("temporary file left")
	}
}

func TestRestoreRefusesWhileRunning(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before, _ := os.ReadFile(filepath.Join(dir, FileName))
	_, err = Restore(dir, backupWith(t, "x"), time.Now())
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("err = %v, want ErrLocked", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, FileName))
	entries, _ := os.ReadDir(dir)
	if !bytes.Equal(before, after) || len(entries) != 2 { // the database and its marker
		t.Fatalf("running database touched: %d entries", len(entries))
	}
}

func TestRestoreRefusesWhatIsNotABackup(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Update(func(tx *bolt.Tx) error { return tx.Bucket(BucketBindings).Put([]byte("old"), []byte("v")) })
	s.Close()
	garbage := filepath.Join(t.TempDir(), "garbage.db")
	os.WriteFile(garbage, bytes.Repeat([]byte("not a database "), 1000), 0o600)
	empty := filepath.Join(t.TempDir(), "empty.db")
	os.WriteFile(empty, nil, 0o600)
	// A sound bbolt file, but not callgate's: no schema version.
	foreign := filepath.Join(t.TempDir(), "foreign.db")
	fdb, _ := bolt.Open(foreign, 0o600, nil)
	fdb.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
	fdb.Close()
	// callgate's, from a newer build.
	newer := backupWith(t, "y")
	ndb, _ := bolt.Open(newer, 0o600, nil)
	ndb.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(BucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, uint64(SchemaVersion()+1)))
	})
	ndb.Close()
	// A backup cut short.
	whole, _ := os.ReadFile(backupWith(t, "z"))
	cut := filepath.Join(t.TempDir(), "cut.db")
	os.WriteFile(cut, whole[:len(whole)/2], 0o600)
	for name, src := range map[string]string{"garbage": garbage, "empty": empty, "foreign": foreign, "newer": newer, "cut": cut} {
		_, err := Restore(dir, src, time.Now())
		if !errors.Is(err, ErrBadBackup) {
			t.Errorf("%s: err = %v, want ErrBadBackup", name, err)
		}
	}
	if _, err := Restore(dir, filepath.Join(t.TempDir(), "missing.db"), time.Now()); err == nil || errors.Is(err, ErrBadBackup) {
		t.Errorf("missing file: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 || !hasBinding(t, dir, "old") {
		t.Fatalf("database replaced or files left: %d entries", len(entries))
	}
}

func TestCopyFileOfAStoppedDatabase(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Update(func(tx *bolt.Tx) error { return tx.Bucket(BucketBindings).Put([]byte("k"), []byte("v")) })
	path := filepath.Join(dir, FileName)
	if _, err := CopyFile(path, &bytes.Buffer{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("copy while open: %v, want ErrLocked", err)
	}
	s.Close()
	var buf bytes.Buffer
	n, err := CopyFile(path, &buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatal(n, err)
	}
	out := filepath.Join(t.TempDir(), "copy.db")
	os.WriteFile(out, buf.Bytes(), 0o600)
	if _, err := VerifyBackup(out, true); err != nil {
		t.Fatal(err)
	}
	none := t.TempDir()
	_, err = CopyFile(filepath.Join(none, FileName), &buf)
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing database: %v", err)
	}
	if _, err := os.Stat(filepath.Join(none, FileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("copying created a database")
	}
}

// A backup holds a read transaction for as long as it takes; writes that
// grow the file meanwhile must not wait for it.
func TestWritesGoOnDuringALongBackup(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reading, release := make(chan struct{}), make(chan struct{})
	backupDone := make(chan error, 1)
	go func() {
		backupDone <- s.View(func(tx *bolt.Tx) error { close(reading); <-release; return nil })
	}()
	<-reading
	wrote := make(chan error, 1)
	go func() {
		value := bytes.Repeat([]byte{'x'}, 64<<10)
		for i := range 256 { // 16 MiB, far past the file's first mapping
			err := s.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(BucketCalls).Put(binary.BigEndian.AppendUint64(nil, uint64(i)), value)
			})
			if err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		close(release)
		t.Fatal("writes waited for the read transaction to end")
	}
	close(release)
	if err := <-backupDone; err != nil {
		t.Fatal(err)
	}
}
