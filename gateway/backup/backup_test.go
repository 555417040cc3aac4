package backup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"callgate/gateway/archive/archivetest"
	"callgate/gateway/config"
	"callgate/gateway/store"

	"github.com/minio/minio-go/v7"
	bolt "go.etcd.io/bbolt"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// source writes data, or fails after half of it.
type source struct {
	data []byte
	fail bool
}

func (s *source) Backup(w io.Writer) (int64, error) {
	if s.fail {
		n, _ := w.Write(s.data[:len(s.data)/2])
		return int64(n), errors.New("read error")
	}
	n, err := w.Write(s.data)
	return int64(n), err
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestWriteFileReplacesOnlyWithACompleteCheckedCopy(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "callgate.db")
	good := []byte("the good copy")
	if err := WriteFile(path, 0o600, func(w io.Writer) error { _, err := w.Write(good); return err }, nil); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	// Half written, then the source fails.
	err := WriteFile(path, 0o600, func(w io.Writer) error {
		w.Write([]byte("half"))
		return errors.New("connection lost")
	}, nil)
	if err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Fatalf("err = %v", err)
	}
	// Written whole, but the check refuses it.
	err = WriteFile(path, 0o600, func(w io.Writer) error { _, err := w.Write([]byte("garbage")); return err },
		func(tmp string) error {
			if b, _ := os.ReadFile(tmp); string(b) != "garbage" {
				t.Errorf("verify saw %q", b)
			}
			return errors.New("not a database")
		})
	if err == nil || !strings.Contains(err.Error(), "not a database") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, good) {
		t.Fatalf("good copy replaced by %q", b)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"callgate.db"}) {
		t.Fatalf("left behind: %v", got)
	}
}

func schedule(t *testing.T, src Source) (*Schedule, *time.Time) {
	now := time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC)
	s := &Schedule{Dir: filepath.Join(t.TempDir(), "backups"), Every: time.Hour, Keep: 3, FirstDelay: time.Minute,
		Source: src, Log: quiet(), Now: func() time.Time { return now }}
	return s, &now
}

func TestRotationKeepsTheNewestKeep(t *testing.T) {
	src := &source{data: []byte("db")}
	s, now := schedule(t, src)
	os.MkdirAll(s.Dir, 0o750)
	// Files that are not copies are never touched.
	for _, other := range []string{"notes.txt", "callgate-latest.db", "callgate.db"} {
		os.WriteFile(filepath.Join(s.Dir, other), nil, 0o600)
	}
	var made []string
	for range 6 {
		p, err := s.Once(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, filepath.Base(p))
		*now = now.Add(time.Hour)
	}
	want := append([]string{"callgate-latest.db", "callgate.db"}, made[3:]...)
	want = append(want, "notes.txt")
	slices.Sort(want)
	if got := names(t, s.Dir); !slices.Equal(got, want) {
		t.Fatalf("dir holds %v, want %v", got, want)
	}
	if made[5] != "callgate-20260301T080000Z.db" {
		t.Fatalf("name %s", made[5])
	}
	if s.ok.Load() != 6 || s.lastBytes.Load() != 2 {
		t.Fatalf("ok %d bytes %d", s.ok.Load(), s.lastBytes.Load())
	}
	// A failing copy leaves the three good ones and deletes nothing.
	src.fail = true
	if _, err := s.Once(context.Background()); err == nil {
		t.Fatal("failed copy reported good")
	}
	if got := names(t, s.Dir); !slices.Equal(got, want) {
		t.Fatalf("after a failed copy: %v", got)
	}
	if s.failed.Load() != 1 {
		t.Fatal("failure not counted")
	}
}

// A copy that does not check out is not kept, and does not push a good
// one out.
func TestUnverifiedCopyIsDropped(t *testing.T) {
	s, now := schedule(t, &source{data: []byte("db")})
	s.Keep = 1
	if _, err := s.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := names(t, s.Dir)
	s.Verify = func(string) error { return errors.New("bad copy") }
	*now = now.Add(time.Hour)
	if _, err := s.Once(context.Background()); err == nil {
		t.Fatal("bad copy accepted")
	}
	if got := names(t, s.Dir); !slices.Equal(got, first) {
		t.Fatalf("%v, want %v", got, first)
	}
}

func TestStaleTemporaryFilesAreRemoved(t *testing.T) {
	s, _ := schedule(t, &source{data: []byte("db")})
	os.MkdirAll(s.Dir, 0o750)
	stale := ".callgate-20260301T020000Z.db.123456" + tmpSuffix
	keep := ".other.tmp"
	os.WriteFile(filepath.Join(s.Dir, stale), []byte("half"), 0o600)
	os.WriteFile(filepath.Join(s.Dir, keep), nil, 0o600)
	s.removeStale()
	if got := names(t, s.Dir); !slices.Equal(got, []string{keep}) {
		t.Fatalf("%v", got)
	}
}

func TestFirstWait(t *testing.T) {
	s, now := schedule(t, &source{data: []byte("db")})
	if w := s.firstWait(); w != time.Minute {
		t.Fatalf("no copies: %s", w)
	}
	os.MkdirAll(s.Dir, 0o750)
	os.WriteFile(filepath.Join(s.Dir, "callgate-"+now.Add(-20*time.Minute).Format(nameTime)+".db"), nil, 0o600)
	if w := s.firstWait(); w != 40*time.Minute {
		t.Fatalf("copy 20 min old, every hour: %s", w)
	}
	*now = now.Add(3 * time.Hour)
	if w := s.firstWait(); w != time.Minute {
		t.Fatalf("copy overdue: %s", w)
	}
	// A copy from the future (the clock went back) waits one period.
	*now = now.Add(-24 * time.Hour)
	if w := s.firstWait(); w != time.Hour {
		t.Fatalf("copy from the future: %s", w)
	}
}

// Run against a real store: copies are sound databases, and stopping ends
// the loop.
func TestRunWritesVerifiedCopies(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(store.BucketCalls).Put([]byte("k"), []byte("v")) })
	s := New(&config.Config{Backup: config.Backup{Dir: filepath.Join(t.TempDir(), "b"), Every: config.Duration(time.Hour), Keep: 2, Target: config.BackupToDir}}, db, quiet())
	s.FirstDelay = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for s.ok.Load() == 0 && s.failed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	list, _ := s.copies(context.Background())
	if s.ok.Load() != 1 || len(list) != 1 {
		t.Fatalf("ok %d failed %d copies %v", s.ok.Load(), s.failed.Load(), list)
	}
	if _, err := store.VerifyBackup(filepath.Join(s.Dir, list[0]), true); err != nil {
		t.Fatal(err)
	}
	if New(&config.Config{Backup: config.Backup{Target: config.BackupToDir}}, db, quiet()) != nil {
		t.Fatal("a schedule without dir")
	}
	var none *Schedule
	none.Run(ctx) // off: returns at once
	if none.Collectors() != nil {
		t.Fatal("metrics of no schedule")
	}
}

// A copy in progress stops when callgate does.
func TestCancelStopsACopy(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := ctxWriter{ctx, io.Discard}
	if _, err := w.Write([]byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

// A copy is synced as it is written, not only at the end.
func TestSyncWriterSyncsOnTheWay(t *testing.T) {
	var buf bytes.Buffer
	syncs := 0
	w := &syncWriter{w: &buf, every: 10, sync: func() error { syncs++; return nil }}
	for _, chunk := range []string{"0123", "4567", "89ab", "cdefghijklmnopqrstu", "v"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if syncs != 2 || buf.String() != "0123456789abcdefghijklmnopqrstuv" {
		t.Fatalf("%d syncs, wrote %q", syncs, buf.String())
	}
	w.sync = func() error { return errors.New("EIO") }
	if _, err := w.Write(make([]byte, 10)); err == nil || !strings.Contains(err.Error(), "EIO") {
		t.Fatalf("failed sync: %v", err)
	}
}

// With target = "archive" each copy is checked, uploaded under backups/
// and gone from the staging directory; the bucket keeps the newest Keep,
// each a sound database; the storage down, a copy fails and nothing in
// the bucket is touched.
func TestBackupsToTheArchive(t *testing.T) {
	srv := archivetest.Start(t)
	c := srv.Bucket(t, "callgate-recordings")
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(store.BucketCalls).Put([]byte("k"), []byte("v")) })
	dataDir := t.TempDir()
	cfg := &config.Config{DataDir: dataDir, Backup: config.Backup{Every: config.Duration(time.Hour), Keep: 2, Target: config.BackupToArchive},
		Archive: config.Archive{Enabled: true, Endpoint: srv.Endpoint, Bucket: "callgate-recordings", Region: "us-east-1",
			AccessKey: archivetest.AccessKey, SecretKey: archivetest.SecretKey, PathStyle: true}}
	s := New(cfg, db, quiet())
	now := time.Date(2026, 12, 3, 3, 0, 0, 0, time.UTC)
	s.Now = func() time.Time { return now }
	ctx := context.Background()
	var made []string
	for range 3 {
		key, err := s.Once(ctx)
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, key)
		now = now.Add(time.Hour)
	}
	var keys []string
	for o := range c.ListObjects(ctx, "callgate-recordings", minio.ListObjectsOptions{Prefix: RemotePrefix, Recursive: true}) {
		keys = append(keys, o.Key)
	}
	if !slices.Equal(keys, made[1:]) {
		t.Fatalf("the bucket holds %q, want the newest two of %q", keys, made)
	}
	for _, k := range keys {
		p := filepath.Join(t.TempDir(), "copy.db")
		if err := c.FGetObject(ctx, "callgate-recordings", k, p, minio.GetObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := store.VerifyBackup(p, true); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	if left, _ := os.ReadDir(filepath.Join(dataDir, "backup-staging")); len(left) != 0 {
		t.Fatalf("staging keeps %d files", len(left))
	}
	srv.Stop()
	if _, err := s.Once(ctx); err == nil || s.failed.Load() != 1 {
		t.Fatalf("a copy with the storage down: %v (failed %d)", err, s.failed.Load())
	}
	if err := s.Health(); err == nil {
		t.Fatal("a failed copy leaves the backups healthy")
	}
	srv.Resume()
	list := func() []string {
		var keys []string
		for o := range c.ListObjects(ctx, "callgate-recordings", minio.ListObjectsOptions{Prefix: RemotePrefix, Recursive: true}) {
			keys = append(keys, o.Key)
		}
		return keys
	}
	if keys := list(); !slices.Equal(keys, made[1:]) {
		t.Fatalf("after the failed copy the bucket holds %q", keys)
	}
	key, err := s.Once(ctx)
	if err != nil || s.Health() != nil {
		t.Fatalf("a copy with the storage back: %v, health %v", err, s.Health())
	}
	if keys := list(); !slices.Equal(keys, []string{made[2], key}) {
		t.Fatalf("after the next copy the bucket holds %q", keys)
	}
}
