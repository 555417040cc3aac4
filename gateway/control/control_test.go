package control

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"callgate/gateway/store"
	"callgate/internal/testenv"

	bolt "go.etcd.io/bbolt"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// socketPath is a socket path short enough for sun_path.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cgctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "control.sock")
}

func serve(t *testing.T, st Store) *Server {
	t.Helper()
	s, err := Listen(socketPath(t), st, quiet())
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(s.Close)
	return s
}

// A real store with data, copied over the socket while a writer keeps
// writing: the copy is a database with everything written before it began.
func TestBackupOverTheSocketIsAConsistentDatabase(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	put := func(i int) error {
		return db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(store.BucketCalls).Put(fmt.Appendf(nil, "k%06d", i), bytes.Repeat([]byte{'x'}, 500))
		})
	}
	for i := range 2000 {
		if err := put(i); err != nil {
			t.Fatal(err)
		}
	}
	s := serve(t, db)
	if fi, err := os.Stat(s.Path()); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %v mode %v", err, fi.Mode())
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // writes go on during the copy
		defer wg.Done()
		for i := 2000; i < 4000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = put(i)
		}
	}()
	out := filepath.Join(t.TempDir(), "copy.db")
	f, _ := os.Create(out)
	n, err := Backup(context.Background(), s.Path(), f)
	f.Close()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(out); fi.Size() != n || n < 2000*500 {
		t.Fatalf("copy of %d bytes, file %d", n, fi.Size())
	}
	rep, err := store.VerifyBackup(out, true)
	if err != nil {
		t.Fatal(err)
	}
	keys := 0
	for _, b := range rep.Buckets {
		if b.Name == string(store.BucketCalls) {
			keys = b.Keys
		}
	}
	if keys < 2000 {
		t.Fatalf("copy holds %d of at least 2000 records", keys)
	}
	if text, err := Ping(context.Background(), s.Path()); err != nil || !strings.HasPrefix(text, "callgate pid ") {
		t.Fatalf("ping: %q %v", text, err)
	}
}

func TestNoDaemonIsErrNotRunning(t *testing.T) {
	path := socketPath(t)
	if _, err := Ping(context.Background(), path); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("missing socket: %v", err)
	}
	// A socket left by a daemon that died: nobody accepts on it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := Backup(context.Background(), path, io.Discard); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("stale socket: %v", err)
	}
	// The next daemon replaces it.
	s, err := Listen(path, fakeStore{}, quiet())
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	go s.Serve()
	defer s.Close()
	if _, err := Ping(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	// A second daemon with the same socket leaves the first one's alone.
	if _, err := Listen(path, fakeStore{}, quiet()); err == nil || !strings.Contains(err.Error(), "another process serves it") {
		t.Fatalf("second listener: %v", err)
	}
	if _, err := Ping(context.Background(), path); err != nil {
		t.Fatalf("first daemon's socket lost: %v", err)
	}
	// A file that is not a socket is never deleted.
	plain := filepath.Join(filepath.Dir(path), "plain")
	os.WriteFile(plain, []byte("x"), 0o600)
	if _, err := Listen(plain, fakeStore{}, quiet()); err == nil {
		t.Fatal("listened over a plain file")
	}
	if _, err := os.Stat(plain); err != nil {
		t.Fatal("plain file removed")
	}
}

// fakeStore writes size bytes of a pattern, failing after failAt bytes
// when failAt > 0, or blocking until release is closed.
type fakeStore struct {
	size    int
	failAt  int
	release chan struct{}
}

func (f fakeStore) Backup(w io.Writer) (int64, error) {
	if f.release != nil {
		<-f.release
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), f.size/16)
	if f.failAt > 0 {
		n, err := w.Write(data[:f.failAt])
		if err != nil {
			return int64(n), err
		}
		return int64(n), errors.New("disk read error")
	}
	n, err := w.Write(data)
	return int64(n), err
}

func TestFailureMidwayReachesTheClient(t *testing.T) {
	s := serve(t, fakeStore{size: 3 << 20, failAt: 1 << 20})
	var buf bytes.Buffer
	_, err := Backup(context.Background(), s.Path(), &buf)
	var re *RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Msg, "disk read error") {
		t.Fatalf("err = %v", err)
	}
}

func TestOneBackupAtATime(t *testing.T) {
	release := make(chan struct{})
	s := serve(t, fakeStore{size: 1 << 10, release: release})
	first := make(chan error, 1)
	go func() { _, err := Backup(context.Background(), s.Path(), io.Discard); first <- err }()
	deadline := time.Now().Add(5 * time.Second)
	for !s.busy.Load() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	_, err := Backup(context.Background(), s.Path(), io.Discard)
	var re *RemoteError
	if !errors.As(err, &re) || !strings.HasPrefix(re.Msg, "busy") {
		t.Fatalf("second backup: %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

func TestCloseEndsACopyInProgress(t *testing.T) {
	s, err := Listen(socketPath(t), fakeStore{size: 64 << 20}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	errc := make(chan error, 1)
	pr, pw := io.Pipe()
	go func() { _, err := Backup(context.Background(), s.Path(), pw); errc <- err }()
	if _, err := io.ReadFull(pr, make([]byte, 1<<20)); err != nil { // the copy is under way
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the copy")
	}
	if err := <-errc; err == nil {
		t.Fatal("a cut-off copy was reported complete")
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after Close: %v", err)
	}
}

func TestAllowed(t *testing.T) {
	for _, c := range []struct {
		peer uint32
		self int
		want bool
	}{
		{0, 990, true},        // root
		{990, 990, true},      // the service user
		{65534, 990, false},   // nobody
		{1000, 990, false},    // a login user
		{0, 0, true},          // a daemon run as root
		{1000, 0, false},      // ... refuses everyone else
		{1 << 31, 990, false}, // no wrap-around
	} {
		if got := Allowed(c.peer, c.self); got != c.want {
			t.Errorf("Allowed(%d, %d) = %v", c.peer, c.self, got)
		}
	}
}

// peerEnv makes the test binary, started again as a child, connect to the
// socket it names and print the answer.
const peerEnv = "CALLGATE_CONTROL_TEST_PEER"

func TestMain(m *testing.M) {
	if path := os.Getenv(peerEnv); path != "" {
		text, err := Ping(context.Background(), path)
		fmt.Printf("answer %q error %v\n", text, err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A process of another user reaches the socket (its mode opened up for the
// test) and is refused on its credentials; the daemon's own user passes.
func TestSocketRefusesAnotherUID(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "running a child as nobody needs root")
	}
	s := serve(t, fakeStore{})
	// The test binary where nobody may run it, and a socket nobody may
	// open: only the credential check stands in the way.
	dir, err := os.MkdirTemp("", "cgpeer")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	self, _ := os.Executable()
	bin := filepath.Join(dir, "peer.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{os.WriteFile(bin, data, 0o755), os.Chmod(dir, 0o755), os.Chmod(filepath.Dir(s.Path()), 0o755), os.Chmod(s.Path(), 0o666)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	run := func(cred *syscall.Credential) string {
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), peerEnv+"="+s.Path())
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("peer: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := run(&syscall.Credential{Uid: 65534, Gid: 65534}); !strings.Contains(out, "permission denied: only root and uid 0 may use this socket") {
		t.Fatalf("nobody was not refused: %s", out)
	}
	if out := run(nil); !strings.Contains(out, `answer "callgate pid`) {
		t.Fatalf("root was refused: %s", out)
	}
}

func TestStreamRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, frameSize - 1, frameSize, frameSize + 1, 3*frameSize + 17} {
		data := bytes.Repeat([]byte{7, 1, 9}, size/3+1)[:size]
		var wire bytes.Buffer
		sw := newStreamWriter(&wire)
		// Uneven writes, as bbolt's page by page.
		for rest := data; len(rest) > 0; {
			k := min(len(rest), 4093)
			if _, err := sw.Write(rest[:k]); err != nil {
				t.Fatal(err)
			}
			rest = rest[k:]
		}
		if err := sw.finish(nil); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		n, err := readStream(bufio.NewReader(&wire), &got)
		if err != nil || n != int64(size) || !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("size %d: n=%d err=%v equal=%v", size, n, err, bytes.Equal(got.Bytes(), data))
		}
	}
}

// Every way a stream can be cut or altered is an error, never a short copy
// taken for a whole one.
func TestStreamDamageIsDetected(t *testing.T) {
	data := bytes.Repeat([]byte("callgate"), 100000)
	var wire bytes.Buffer
	sw := newStreamWriter(&wire)
	sw.Write(data)
	sw.finish(nil)
	good := wire.Bytes()
	check := func(name string, b []byte) {
		t.Helper()
		if _, err := readStream(bufio.NewReader(bytes.NewReader(b)), io.Discard); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, cut := range []int{0, 3, 4, 1000, frameSize + 4, len(good) - 80, len(good) - 1} {
		check(fmt.Sprint("cut at ", cut), good[:cut])
	}
	flipped := bytes.Clone(good)
	flipped[100] ^= 1
	check("a data byte changed", flipped)
	sum := crc32.Checksum(data, castagnoli)
	check("wrong count", bytes.Replace(good, fmt.Appendf(nil, "end %d", len(data)), fmt.Appendf(nil, "end %d", len(data)-1), 1))
	check("trailer missing", good[:bytes.LastIndex(good, []byte("end "))])
	check("wrong sum", bytes.Replace(good, fmt.Appendf(nil, " %08x\n", sum), fmt.Appendf(nil, " %08x\n", sum^1), 1))
	check("sum in capitals", bytes.Replace(good, fmt.Appendf(nil, " %08x\n", sum), fmt.Appendf(nil, " %08X\n", sum), 1))
	check("oversized frame", []byte{0xff, 0xff, 0xff, 0xff})
}

func TestParseRequest(t *testing.T) {
	for line, want := range map[string]string{"callgate-control/1 ping": CmdPing, "callgate-control/1 backup": CmdBackup} {
		if got, err := ParseRequest(line); err != nil || got != want {
			t.Errorf("%q: %q %v", line, got, err)
		}
	}
	for _, line := range []string{"", "ping", "callgate-control/2 backup", "callgate-control/1 backup ", "callgate-control/1 restore",
		"callgate-control/1  backup", "CALLGATE-CONTROL/1 backup", "GET / HTTP/1.1"} {
		if _, err := ParseRequest(line); !errors.Is(err, ErrProtocol) {
			t.Errorf("%q accepted: %v", line, err)
		}
	}
}

// A client that sends garbage, or nothing, gets an error line and the
// server goes on serving.
func TestServerRefusesBadRequests(t *testing.T) {
	s := serve(t, fakeStore{})
	for _, req := range []string{"GET / HTTP/1.1\r\n", strings.Repeat("x", 500) + "\n", "callgate-control/1 shutdown\n"} {
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, req)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.HasPrefix(line, "error ") {
			t.Errorf("request %.20q: answer %q", req, line)
		}
	}
	if _, err := Ping(context.Background(), s.Path()); err != nil {
		t.Fatal(err)
	}
}
