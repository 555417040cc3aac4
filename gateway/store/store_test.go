package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestOpenCreatesSchema(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v, err := s.Version()
	if err != nil || v != SchemaVersion() {
		t.Fatalf("version = %d, %v; want %d", v, err, SchemaVersion())
	}
	if s.Path() != filepath.Join(dir, FileName) {
		t.Fatalf("path = %s", s.Path())
	}
	err = s.View(func(tx *bolt.Tx) error {
		if tx.Bucket(BucketBindings) == nil {
			return errors.New("bindings bucket missing")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSecondInstanceFailsAtOnce(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(dir)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

func TestMigrationsRunOnceInOrder(t *testing.T) {
	dir := t.TempDir()
	var ran []string
	migs := []Migration{
		{Name: "one", Up: func(tx *bolt.Tx) error {
			ran = append(ran, "one")
			_, err := tx.CreateBucketIfNotExists([]byte("a"))
			return err
		}},
	}
	s, err := open(dir, migs)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	migs = append(migs, Migration{Name: "two", Up: func(tx *bolt.Tx) error {
		ran = append(ran, "two")
		return tx.Bucket([]byte("a")).Put([]byte("k"), []byte("v"))
	}})
	s, err = open(dir, migs)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := s.Version()
	s.Close()
	if v != 2 || len(ran) != 2 || ran[0] != "one" || ran[1] != "two" {
		t.Fatalf("version %d, ran %v", v, ran)
	}
	// A database from a newer build is refused rather than damaged.
	if _, err := open(dir, migs[:1]); err == nil {
		t.Fatal("older build opened a newer schema")
	}
	// A failing migration leaves the version where it was.
	migs = append(migs, Migration{Name: "bad", Up: func(tx *bolt.Tx) error { return errors.New("boom") }})
	if _, err := open(dir, migs); err == nil {
		t.Fatal("failing migration not reported")
	}
	s, err = open(dir, migs[:2])
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.Version(); v != 2 {
		t.Fatalf("version after failed migration = %d", v)
	}
}

func TestBackupIsAValidDatabase(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(func(tx *bolt.Tx) error { return tx.Bucket(BucketBindings).Put([]byte("x"), []byte("y")) }); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := s.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	bdir := t.TempDir()
	if err := writeFile(filepath.Join(bdir, FileName), buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	b, err := Open(bdir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var got []byte
	_ = b.View(func(tx *bolt.Tx) error { got = append(got, tx.Bucket(BucketBindings).Get([]byte("x"))...); return nil })
	if string(got) != "y" {
		t.Fatalf("backup lost data: %q", got)
	}
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }
