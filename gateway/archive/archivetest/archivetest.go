// Package archivetest runs a real S3 server for tests: SeaweedFS (`weed`,
// built by `make weed` into build/weed, or named by CALLGATE_WEED) on
// loopback, with one identity and its keys, started and stopped at will
// to make outages.
package archivetest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"callgate/internal/testenv"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Keys of the identity the server accepts.
const (
	AccessKey = "callgate-test-access"
	SecretKey = "callgate-test-secret-0123456789"
)

// Server is a SeaweedFS server with the S3 gateway on loopback.
type Server struct {
	// Endpoint is the S3 URL, e.g. "http://127.0.0.1:41333".
	Endpoint string
	t        testing.TB
	bin, dir string
	ports    []int
	cmd      *exec.Cmd
	done     chan struct{}
}

// weed finds the SeaweedFS binary.
func weed(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CALLGATE_WEED"); p != "" {
		return p
	}
	dir, _ := os.Getwd()
	for ; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "build", "weed")
			if _, err := os.Stat(p); err != nil {
				testenv.Unavailable(t, "SeaweedFS is not built: run make weed (make test does)")
			}
			return p
		}
	}
	testenv.Unavailable(t, "module root not found")
	return ""
}

// freePorts are n distinct ports free on loopback now (held together
// while chosen, so none repeats).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var out []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out
}

// Start runs SeaweedFS (master, volume, filer and S3) in a temporary
// directory and waits until its S3 gateway answers; it is stopped when
// the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: weed(t), dir: t.TempDir()}
	// Every port SeaweedFS would otherwise derive (+10000 for gRPC) or
	// fix (Iceberg, Lance) is named, so that nothing it listens on is left
	// to chance.
	s.ports = freePorts(t, 8)
	s.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", s.ports[3])
	conf, _ := json.Marshal(map[string]any{"identities": []any{map[string]any{
		"name": "callgate", "credentials": []any{map[string]string{"accessKey": AccessKey, "secretKey": SecretKey}},
		"actions": []string{"Admin", "Read", "Write", "List", "Tagging"}}}})
	if err := os.WriteFile(filepath.Join(s.dir, "s3.json"), conf, 0o600); err != nil {
		t.Fatal(err)
	}
	s.Resume()
	t.Cleanup(s.Stop)
	return s
}

// Resume starts the server again after Stop, on the same ports and data.
func (s *Server) Resume() {
	s.t.Helper()
	data := filepath.Join(s.dir, "data")
	_ = os.MkdirAll(data, 0o755)
	port := func(i int) string { return strconv.Itoa(s.ports[i]) }
	s.cmd = exec.Command(s.bin, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-dir="+data,
		"-master.port="+port(0), "-volume.port="+port(1), "-filer.port="+port(2),
		"-master.port.grpc="+port(4), "-volume.port.grpc="+port(5), "-filer.port.grpc="+port(6),
		"-filer", "-s3", "-s3.port="+port(3), "-s3.port.grpc="+port(7), "-s3.port.iceberg=0", "-s3.port.lance=0",
		"-s3.config="+filepath.Join(s.dir, "s3.json"), "-master.telemetry=false",
		"-volume.max=10", "-master.volumeSizeLimitMB=64")
	log, err := os.OpenFile(filepath.Join(s.dir, "weed.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start SeaweedFS: %v", err)
	}
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); log.Close(); close(s.done) }()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for {
		if res, err := http.Get(s.Endpoint + "/"); err == nil {
			res.Body.Close()
			if res.StatusCode < 500 {
				return
			}
		}
		select {
		case <-s.done:
			b, _ := os.ReadFile(filepath.Join(s.dir, "weed.log"))
			s.t.Fatalf("SeaweedFS exited:\n%s", b)
		case <-ctx.Done():
			b, _ := os.ReadFile(filepath.Join(s.dir, "weed.log"))
			s.t.Fatalf("SeaweedFS's S3 gateway did not answer:\n%s", b)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop kills the server, as a crash or a pulled cable would (an outage);
// what it stored stays on its disk, and Resume starts it again. (Asked to
// stop, SeaweedFS's volume server waits ten seconds before it goes.)
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// Bucket makes a bucket on the server and returns a client of it, to look
// at what the code under test stored.
func (s *Server) Bucket(t testing.TB, name string) *minio.Client {
	t.Helper()
	u, _ := url.Parse(s.Endpoint)
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""),
		BucketLookup: minio.BucketLookupPath, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(context.Background(), name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
	return c
}
