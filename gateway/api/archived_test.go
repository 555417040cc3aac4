package api

import (
	"context"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"callgate/gateway/archive"
	"callgate/gateway/archive/archivetest"
	"callgate/gateway/recordings"
	"callgate/gateway/store"
	"callgate/media/opus"

	"github.com/minio/minio-go/v7"
)

// The link a CRM keeps still plays, with ranges, once the recording lives
// in the archive alone; retention, on an injected clock, keeps it within
// the retention and then deletes the object, after which the link answers
// 410 Gone.
func TestArchivedRecordingLinkAndRetention(t *testing.T) {
	srv := archivetest.Start(t)
	c := srv.Bucket(t, "callgate-recordings")
	f := newFixture(t)
	// c1's recording, compressed, its call ended half an hour ago.
	day := filepath.Join(f.dir, "2026/11/22")
	if err := os.Remove(filepath.Join(day, "c1-1.wav")); err != nil {
		t.Fatal(err)
	}
	ogg := filepath.Join(day, "c1-1.opus")
	enc, err := opus.Create(ogg, 8000, 2, opus.Telephony())
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, 2*8000*2)
	for i := range len(pcm) / 2 {
		pcm[2*i] = int16(8000 * math.Sin(2*math.Pi*440*float64(i)/8000))
	}
	if err := enc.Write(pcm); err != nil || enc.Close() != nil {
		t.Fatalf("write the recording: %v", err)
	}
	ended := time.Now().Add(-30 * time.Minute)
	if err := os.Chtimes(ogg, ended, ended); err != nil {
		t.Fatal(err)
	}

	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := archive.New(archive.Config{Endpoint: srv.Endpoint, Bucket: "callgate-recordings", Region: "us-east-1",
		AccessKey: archivetest.AccessKey, SecretKey: archivetest.SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	lib := recordings.New(recordings.Config{Enabled: true, Dir: f.dir, Format: recordings.FormatOpus, Retention: 24 * time.Hour})
	lib.Archive(recordings.ArchiveConfig{Store: st, Queue: db.Bucket(store.BucketArchiveQueue), Index: db.Bucket(store.BucketArchived),
		Every: 100 * time.Millisecond})
	f.s.Recordings.Files = lib
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { lib.RunArchive(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	const key = "2026/11/22/c1-1.opus"
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, errObj := c.StatObject(context.Background(), "callgate-recordings", key, minio.StatObjectOptions{})
		if _, errLocal := os.Stat(ogg); errObj == nil && os.IsNotExist(errLocal) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the recording was not archived")
		}
	}

	u, _ := url.Parse(f.links.Lasting("c1-1"))
	link := u.RequestURI()
	res, body := f.do(t, "GET", link, "", "Range", "bytes=0-3")
	if res.StatusCode != 206 || string(body) != "OggS" || res.Header.Get("Content-Type") != "audio/ogg; codecs=opus" {
		t.Fatalf("the archived recording's link with a range: %d %s %q", res.StatusCode, res.Header.Get("Content-Type"), body)
	}

	// 23 hours on the recording is within the retention; 25 hours on not.
	if gone, err := lib.Sweep(time.Now().Add(23 * time.Hour)); err != nil || len(gone) != 0 {
		t.Fatalf("retention within a day deleted %q (%v)", gone, err)
	}
	if res, _ := f.do(t, "GET", link, ""); res.StatusCode != 200 {
		t.Fatalf("the link within the retention: %d", res.StatusCode)
	}
	if _, err := lib.Sweep(time.Now().Add(25 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StatObject(context.Background(), "callgate-recordings", key, minio.StatObjectOptions{}); err == nil {
		t.Fatal("the object is still in the bucket past the retention")
	}
	if res, b := f.do(t, "GET", link, ""); res.StatusCode != 410 || errCode(b) != "recording_deleted" {
		t.Fatalf("the link past the retention: %d %s, want 410 recording_deleted", res.StatusCode, b)
	}
}
