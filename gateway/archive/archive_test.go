package archive_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"callgate/gateway/archive"
	"callgate/gateway/archive/archivetest"
)

const bucket = "callgate-recordings"

func store(tb testing.TB, srv *archivetest.Server, secret, bkt string) *archive.Store {
	tb.Helper()
	st, err := archive.New(archive.Config{Endpoint: srv.Endpoint, Bucket: bkt, Region: "us-east-1",
		AccessKey: archivetest.AccessKey, SecretKey: secret, PathStyle: true})
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// A stored file reads back whole and in ranges; the storage's refusals
// (a wrong key, a missing bucket, a missing object) are errors that say
// what to check, without the key.
func TestUploadOpenAndRefusals(t *testing.T) {
	srv := archivetest.Start(t)
	srv.Bucket(t, bucket)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rec.opus")
	data := make([]byte, 100_000)
	_, _ = rand.Read(data)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	st := store(t, srv, archivetest.SecretKey, bucket)
	if err := st.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Upload(ctx, "2026/12/03/c1-1.opus", path, "audio/ogg; codecs=opus", map[string]string{"call-id": "c1"}); err != nil {
		t.Fatal(err)
	}
	o, err := st.Open(ctx, "2026/12/03/c1-1.opus")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Seek(50_000, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 1000)
	if _, err := io.ReadFull(o, part); err != nil || string(part) != string(data[50_000:51_000]) || o.Size != int64(len(data)) {
		t.Fatalf("a range of the object: %v, size %d", err, o.Size)
	}
	o.Close()
	if _, err := st.Open(ctx, "2026/12/03/missing-1.opus"); !errors.Is(err, archive.ErrNotFound) {
		t.Fatalf("a missing object: %v", err)
	}

	const wrong = "not-the-secret-key-0123"
	err = store(t, srv, wrong, bucket).Upload(ctx, "x.opus", path, "audio/ogg", nil)
	if err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") || !strings.Contains(err.Error(), "check archive.secret_key") || strings.Contains(err.Error(), wrong) {
		t.Fatalf("a wrong key: %v", err)
	}
	err = store(t, srv, archivetest.SecretKey, "no-such-bucket").Check(ctx)
	if err == nil || !strings.Contains(err.Error(), "no-such-bucket") {
		t.Fatalf("a missing bucket: %v", err)
	}
}

// BenchmarkArchive is the archive's speed against SeaweedFS on loopback:
// uploads per second of a five-minute call's Ogg Opus file (150 KB), one
// at a time (as the archive's queue sends them) and four at a time, each
// verified (Content-MD5, size read back); and the time to
// the first byte of an archived recording opened for playback, p50 and
// p99 over 200 opens.
// go test -run '^$' -bench Archive -benchtime 200x ./gateway/archive
func BenchmarkArchive(b *testing.B) {
	srv := archivetest.Start(b)
	srv.Bucket(b, bucket)
	st := store(b, srv, archivetest.SecretKey, bucket)
	path := filepath.Join(b.TempDir(), "rec.opus")
	data := make([]byte, 150_000)
	_, _ = rand.Read(data)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	// SeaweedFS makes its first volume seconds after it starts: not what
	// is measured.
	if err := st.Upload(ctx, "warm-up", path, "application/octet-stream", nil); err != nil {
		b.Fatal(err)
	}
	for _, workers := range []int{1, 4} {
		b.Run(fmt.Sprintf("upload-%d", workers), func(b *testing.B) {
			var n atomic.Int64
			start := time.Now()
			var wg sync.WaitGroup
			next := make(chan int)
			for range workers {
				wg.Go(func() {
					for i := range next {
						if err := st.Upload(ctx, fmt.Sprintf("2026/12/03/u%d-%d.opus", i, workers), path, "audio/ogg; codecs=opus",
							map[string]string{"call-id": fmt.Sprint(i), "leg": "1"}); err != nil {
							b.Error(err)
						}
						n.Add(1)
					}
				})
			}
			i := 0
			for b.Loop() {
				next <- i
				i++
			}
			close(next)
			wg.Wait()
			b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "uploads/s")
		})
	}
	b.Run("first-byte", func(b *testing.B) {
		if err := st.Upload(ctx, "2026/12/03/play-1.opus", path, "audio/ogg; codecs=opus", nil); err != nil {
			b.Fatal(err)
		}
		var lat []time.Duration
		one := make([]byte, 1)
		for b.Loop() {
			t0 := time.Now()
			o, err := st.Open(ctx, "2026/12/03/play-1.opus")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(o, one); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
			o.Close()
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	})
}
