package archive_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"callgate/gateway/archive/archivetest"
)

func TestProbeTiming(t *testing.T) {
	t0 := time.Now()
	srv := archivetest.Start(t)
	t.Logf("start %s", time.Since(t0))
	srv.Bucket(t, bucket)
	t.Logf("bucket %s", time.Since(t0))
	st := store(t, srv, archivetest.SecretKey, bucket)
	p := filepath.Join(t.TempDir(), "x")
	os.WriteFile(p, []byte("hello"), 0o600)
	if err := st.Upload(context.Background(), "a/b", p, "x", nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("upload %s", time.Since(t0))
	srv.Stop()
	t.Logf("stop %s", time.Since(t0))
}
