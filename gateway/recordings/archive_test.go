package recordings

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"callgate/gateway/archive"
	"callgate/gateway/archive/archivetest"
	"callgate/gateway/store"
	"callgate/media/record"

	"github.com/minio/minio-go/v7"
)

const testBucket = "callgate-recordings"

// s3 is a client of the test server, to look at what the archive did.
func s3(t *testing.T, srv *archivetest.Server) *minio.Client { return srv.Bucket(t, testBucket) }

// archiveSetup is a storage with the bucket, a client of it, a database
// for the queue and index, and a recordings directory.
func archiveSetup(t *testing.T) (*archivetest.Server, *minio.Client, *store.Store, string) {
	t.Helper()
	srv := archivetest.Start(t)
	c := s3(t, srv)
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return srv, c, db, t.TempDir()
}

// archived makes a library over dir whose archive is srv, its queue and
// index in a real database at db.
func archivedLibrary(t *testing.T, srv *archivetest.Server, dir string, db *store.Store, secret string) *Library {
	t.Helper()
	st, err := archive.New(archive.Config{Endpoint: srv.Endpoint, Bucket: testBucket, Region: "us-east-1",
		AccessKey: archivetest.AccessKey, SecretKey: secret, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	l := New(Config{Enabled: true, Dir: dir, Format: FormatOpus, Retention: 24 * time.Hour})
	l.Archive(ArchiveConfig{Store: st, Queue: db.Bucket(store.BucketArchiveQueue), Index: db.Bucket(store.BucketArchived), Every: 100 * time.Millisecond})
	return l
}

// recordLeg leaves a leg's recording of 2 s of tones and hands it over as
// Recording.Close does, with the call's metadata; it returns its name.
func recordLeg(t *testing.T, l *Library, id string, at time.Time) string {
	t.Helper()
	name := Name(id, "1", at)
	writeWAV(t, filepath.Join(l.cfg.Dir, name), 2, 440, 1000, -1)
	l.arch.queue(name, map[string]string{"call-id": id, "leg": "1", "employee": "ivanov", "client": "+79161234567", "started": at.Format(time.RFC3339)})
	l.enc.enqueue(filepath.Join(l.cfg.Dir, name))
	return name
}

func runFor(l *Library, ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { l.RunEncoders(ctx); done <- struct{}{} }()
	go func() { l.RunArchive(ctx); done <- struct{}{} }()
	return func() { cancel(); <-done; <-done }
}

func waitUntil(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A recording, compressed, goes to the bucket under its day and name with
// the call's metadata, checked by the storage; the local copy goes; the
// name the call record keeps still opens it (ranged reads from the
// archive); retention deletes it from the archive, after which it is gone.
func TestRecordingsArchived(t *testing.T) {
	srv, c, db, dir := archiveSetup(t)
	l := archivedLibrary(t, srv, dir, db, archivetest.SecretKey)
	stop := runFor(l, context.Background())
	defer stop()
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	name := recordLeg(t, l, "call-a", at)
	key := "2026/12/03/call-a-1.opus"
	waitUntil(t, "the recording archived", 30*time.Second, func() bool {
		_, err := c.StatObject(context.Background(), testBucket, key, minio.StatObjectOptions{})
		_, local := os.Stat(filepath.Join(dir, "2026", "12", "03", "call-a-1.opus"))
		return err == nil && os.IsNotExist(local)
	})
	info, err := c.StatObject(context.Background(), testBucket, key, minio.StatObjectOptions{})
	if err != nil || info.UserMetadata["Call-Id"] != "call-a" || info.UserMetadata["Employee"] != "ivanov" || info.UserMetadata["Client"] != "+79161234567" ||
		info.UserMetadata["Leg"] != "1" || info.ContentType != "audio/ogg; codecs=opus" {
		t.Fatalf("the object's metadata: %v %s (%v)", info.UserMetadata, info.ContentType, err)
	}
	f, err := l.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4)
	_, _ = f.Seek(0, io.SeekStart)
	if _, err := io.ReadFull(f, head); err != nil || string(head) != "OggS" || f.Type != "audio/ogg; codecs=opus" || f.Size < 1000 {
		t.Fatalf("opened from the archive: %q %s %d bytes (%v)", head, f.Type, f.Size, err)
	}
	if _, err := f.Seek(f.Size-10, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	tail, err := io.ReadAll(f)
	f.Close()
	if err != nil || len(tail) != 10 {
		t.Fatalf("a range at the end: %d bytes (%v)", len(tail), err)
	}
	if l.archiveQueue() != 0 {
		t.Fatalf("queue depth %d after the upload", l.archiveQueue())
	}
	// The storage view: nothing local, one recording archived, today's.
	l.usage.at = time.Time{}
	if u := l.Usage(); u.Files != 0 || u.Archive == nil || u.Archive.Files != 1 || u.Archive.Bytes != f.Size || u.Week[6].Bytes != f.Size {
		t.Fatalf("usage after the upload: %+v %+v", u, u.Archive)
	}

	// Retention: the archived recording past it is deleted there too.
	l.SetLimits(time.Hour, 0)
	gone, err := l.Sweep(time.Now().Add(48 * time.Hour))
	if err != nil || len(gone) != 1 || gone[0] != name {
		t.Fatalf("retention deleted %q (%v)", gone, err)
	}
	if _, err := c.StatObject(context.Background(), testBucket, key, minio.StatObjectOptions{}); err == nil {
		t.Fatal("the object is still in the bucket after retention")
	}
	if _, err := l.Open(name); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a recording deleted by retention opens: %v", err)
	}
}

// The storage down: recordings wait locally in the queue (depth, failures
// counted); callgate restarted meanwhile keeps the queue; the storage back,
// every recording arrives once and the local copies go.
func TestArchiveSurvivesOutageAndRestart(t *testing.T) {
	srv := archivetest.Start(t)
	c := s3(t, srv)
	dbDir, dir := t.TempDir(), t.TempDir()
	db, err := store.Open(dbDir)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	l := archivedLibrary(t, srv, dir, db, archivetest.SecretKey)
	stop := runFor(l, context.Background())
	at := time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC)
	for _, id := range []string{"o1", "o2", "o3", "o4", "o5"} {
		recordLeg(t, l, id, at)
	}
	waitUntil(t, "the uploads failing", 30*time.Second, func() bool { return l.arch.failures.Load() >= 5 && l.archiveQueue() == 5 })
	if u := l.Usage(); u.Archive == nil || u.Archive.Queued != 5 || u.Archive.LastError == "" {
		t.Fatalf("the admin page's view of the outage: %+v", u.Archive)
	}
	// Restart: a new library over the same directory and database.
	stop()
	db.Close()
	if db, err = store.Open(dbDir); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l = archivedLibrary(t, srv, dir, db, archivetest.SecretKey)
	stop = runFor(l, context.Background())
	defer stop()
	srv.Resume()
	waitUntil(t, "the queue drained", 90*time.Second, func() bool { return l.archiveQueue() == 0 && l.arch.depth.Load() == 0 && countObjects(t, c) == 5 })
	time.Sleep(time.Second) // a duplicate upload would show now
	if n := countObjects(t, c); n != 5 {
		t.Fatalf("%d objects in the bucket, want 5", n)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "2026", "12", "03", "*"))
	if len(left) != 0 {
		t.Fatalf("local copies left after the uploads: %q", left)
	}
}

func countObjects(t *testing.T, c *minio.Client) int {
	t.Helper()
	n := 0
	for o := range c.ListObjects(context.Background(), testBucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err == nil {
			n++
		}
	}
	return n
}

// A wrong secret key: nothing is uploaded, nothing deleted, and the error
// the storage gave is what the admin page shows.
func TestArchiveWithWrongKey(t *testing.T) {
	srv, c, db, dir := archiveSetup(t)
	l := archivedLibrary(t, srv, dir, db, "not-the-secret-key")
	stop := runFor(l, context.Background())
	defer stop()
	// Known from the start, before any recording tries.
	waitUntil(t, "the bucket check at start", 10*time.Second, func() bool { return l.ArchiveHealth() != nil })
	if err := l.ArchiveHealth(); !strings.Contains(err.Error(), "check archive.secret_key") {
		t.Fatalf("at start: %v", err)
	}
	name := recordLeg(t, l, "w1", time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	waitUntil(t, "the upload refused", 30*time.Second, func() bool { return l.arch.failures.Load() >= 1 })
	u := l.Usage()
	if u.Archive == nil || !strings.Contains(u.Archive.LastError, "SignatureDoesNotMatch") || strings.Contains(u.Archive.LastError, "not-the-secret-key") {
		t.Fatalf("the admin page says %+v", u.Archive)
	}
	if n := countObjects(t, c); n != 0 {
		t.Fatalf("%d objects uploaded with a wrong key", n)
	}
	if f, err := l.Open(name); err != nil {
		t.Fatalf("the recording after the refusal: %v", err)
	} else {
		f.Close()
	}
}

// A WAV that cannot be compressed (here not a recording at all) is
// archived as it is instead of waiting for ever; a WAV left from before
// the archive was on is found at the start, compressed and archived.
func TestArchiveTakesWhatEncodingLeaves(t *testing.T) {
	srv, c, db, dir := archiveSetup(t)
	day := filepath.Join(dir, "2026", "12", "03")
	if err := os.MkdirAll(day, 0o750); err != nil {
		t.Fatal(err)
	}
	writeWAV(t, filepath.Join(day, "old-1.wav"), 2, 440, 1000, -1)
	l := archivedLibrary(t, srv, dir, db, archivetest.SecretKey)
	// The marker of a recording that started meanwhile is not a recording.
	if err := os.MkdirAll(filepath.Join(dir, record.MarkerDir), 0o750); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, record.MarkerDir, "2026_12_03_stale-1.wav")
	if err := os.WriteFile(marker, []byte("2026/12/03/stale-1.wav"), 0o600); err != nil {
		t.Fatal(err)
	}
	junk := Name("junk", "1", time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC))
	if err := os.WriteFile(filepath.Join(dir, junk), []byte("not a recording"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.arch.queue(junk, map[string]string{"call-id": "junk", "leg": "1"})
	stop := runFor(l, context.Background())
	defer stop()
	l.enc.enqueue(filepath.Join(dir, junk))
	waitUntil(t, "both archived", 30*time.Second, func() bool { return countObjects(t, c) == 2 && l.archiveQueue() == 0 })
	for key, typ := range map[string]string{"2026/12/03/junk-1.wav": "audio/wav", "2026/12/03/old-1.opus": "audio/ogg; codecs=opus"} {
		info, err := c.StatObject(context.Background(), testBucket, key, minio.StatObjectOptions{})
		if err != nil || info.ContentType != typ {
			t.Fatalf("%s: %s (%v), want %s", key, info.ContentType, err, typ)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(day, "*")); len(left) != 0 {
		t.Fatalf("local copies left: %q", left)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the marker of a recording in progress: %v", err)
	}
}

// A bucket that does not exist is named from the start; once it is made,
// the next look at it clears the error and recordings go.
func TestArchiveMissingBucket(t *testing.T) {
	srv := archivetest.Start(t)
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dir := t.TempDir()
	l := archivedLibrary(t, srv, dir, db, archivetest.SecretKey) // no bucket made
	l.arch.cfg.CheckEvery = 200 * time.Millisecond
	stop := runFor(l, context.Background())
	defer stop()
	waitUntil(t, "the bucket check at start", 10*time.Second, func() bool { return l.ArchiveHealth() != nil })
	if err := l.ArchiveHealth(); !strings.Contains(err.Error(), "archive bucket "+testBucket+": NoSuchBucket") {
		t.Fatalf("at start: %v", err)
	}
	c := s3(t, srv)
	waitUntil(t, "the error cleared", 10*time.Second, func() bool { return l.ArchiveHealth() == nil })
	recordLeg(t, l, "m1", time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	waitUntil(t, "the recording archived", 30*time.Second, func() bool { return countObjects(t, c) == 1 })
}

// failingStore refuses uploads with a bare error and answers the bucket
// check with its cause, as SeaweedFS does for a missing bucket when the
// key may not create one.
type failingStore struct{ ObjectStore }

func (failingStore) Upload(context.Context, string, string, string, map[string]string) error {
	return errors.New("upload x: InternalError: We encountered an internal error, please try again.")
}
func (failingStore) Check(context.Context) error {
	return errors.New("archive bucket callgate-recordings: NoSuchBucket: The specified bucket does not exist (create the bucket or correct archive.bucket)")
}

// A failed upload is shown with the cause the bucket check finds, not
// the storage's bare answer.
func TestArchiveNamesTheCause(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l := New(Config{Enabled: true, Dir: t.TempDir(), Format: FormatWAV, Retention: 24 * time.Hour})
	l.Archive(ArchiveConfig{Store: failingStore{}, Queue: db.Bucket(store.BucketArchiveQueue), Index: db.Bucket(store.BucketArchived), Every: 50 * time.Millisecond})
	l.arch.failed("2026/12/03/x-1.wav", errors.New("upload x: InternalError: We encountered an internal error, please try again."))
	if err := l.ArchiveHealth(); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("the archive's error: %v", err)
	}
}
