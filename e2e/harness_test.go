package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The end-to-end tests run the real binary, built once for the package
// from the command's source in this module.
var binPath string

func TestMain(m *testing.M) {
	// A test re-run inside a network namespace uses its parent's binary.
	if bin := os.Getenv(netnsBinEnv); bin != "" {
		binPath = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "callgate-e2e-")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "callgate")
	args := []string{"build", "-o", binPath}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, "callgate/cmd/callgate")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build callgate: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needTool fails in CI when a peer is missing (CI installs it) and skips
// with the reason elsewhere.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; .ci/run must install it", name)
	}
	t.Skipf("skipping: %s is not installed (run `make deps` or .ci/run to install it)", name)
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		pc.Close()
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

const testToken = "e2e-token-0123456789"

type daemonConfig struct {
	DataDir  string
	SIPPort  int
	HTTPPort int
	SIPExtra string // more keys in the [sip] table
	// HTTPExtra is more keys in the [http] table; IvanovExtra more keys in
	// ivanov's [[employee]] table.
	HTTPExtra   string
	IvanovExtra string
	PetrovExtra string // more keys in petrov's [[employee]] table
	Extra       string // appended TOML (e.g. an [upstream] section)
	Env         []string
	RunArgs     []string // more arguments to `callgate run` (e.g. -init)
}

func (c daemonConfig) toml() string {
	return fmt.Sprintf(`data_dir = %q
[log]
level = "debug"
[sip]
listen = ["udp:127.0.0.1:%d", "tcp:127.0.0.1:%d"]
allow_networks = ["127.0.0.1/32", "127.0.0.2/32"]
keepalive_interval = "1s"
min_expires = "10s"
%s
[sip.ban]
max_failures = 3
max_failures_per_ip = 20
window = "1m"
duration = "1m"
[http]
listen = "127.0.0.1:%d"
api_tokens = [%q]
%s
[[employee]]
id = "ivanov"
name = "Иванов Иван"
extensions = ["101", "102"]
sip_password = "Phone101pass"
%s
[[employee]]
id = "petrov"
name = "Петров Пётр"
extensions = ["103"]
sip_password = "Phone103pass"
%s
%s`, c.DataDir, c.SIPPort, c.SIPPort, c.SIPExtra, c.HTTPPort, testToken, c.HTTPExtra, c.IvanovExtra, c.PetrovExtra, c.Extra)
}

type daemon struct {
	t    *testing.T
	cfg  daemonConfig
	path string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan error
	// exited is set once the process has been reaped by stop or kill.
	exited bool
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newDaemonConfig(t *testing.T, extra string) daemonConfig {
	return daemonConfig{DataDir: t.TempDir(), SIPPort: freePort(t), HTTPPort: freePort(t), Extra: extra}
}

// startDaemon runs the binary and waits until its SIP listeners are up.
func startDaemon(t *testing.T, cfg daemonConfig) *daemon {
	t.Helper()
	path := filepath.Join(t.TempDir(), "callgate.toml")
	if err := os.WriteFile(path, []byte(cfg.toml()), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, cfg: cfg, path: path, log: &syncBuffer{}, done: make(chan error, 1)}
	d.cmd = exec.Command(binPath, append([]string{"run", "-config", path}, cfg.RunArgs...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.Env = append(os.Environ(), cfg.Env...)
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if !d.exited {
			d.cmd.Process.Kill()
			<-d.done
		}
		if strings.Contains(d.log.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a data race in callgate")
		}
		if t.Failed() {
			t.Logf("callgate log:\n%s", d.log.String())
		}
	})
	d.waitFor("sip listeners up", 10*time.Second, func() bool {
		res, err := d.get("/readyz", false)
		if err != nil {
			return false
		}
		res.Body.Close()
		return strings.Contains(d.log.String(), "callgate running")
	})
	return d
}

func (d *daemon) sipAddr() string { return fmt.Sprintf("127.0.0.1:%d", d.cfg.SIPPort) }

// url is the address of path on callgate's HTTP API.
func (d *daemon) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", d.cfg.HTTPPort, path)
}

func (d *daemon) get(path string, auth bool) (*http.Response, error) {
	req, _ := http.NewRequest("GET", d.url(path), nil)
	if auth {
		req.Header.Set("Authorization", "Bearer "+testToken)
	}
	return http.DefaultClient.Do(req)
}

// metric returns the value of a metric line such as
// `callgate_upstream_registered{account="sales1"}`, or -1 if absent.
func (d *daemon) metric(name string) float64 {
	res, err := d.get("/metrics", true)
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(line[len(name):]), 64)
			return v
		}
	}
	return -1
}

func (d *daemon) waitMetric(name string, want float64, timeout time.Duration) {
	d.t.Helper()
	d.waitFor(fmt.Sprintf("%s == %v", name, want), timeout, func() bool { return d.metric(name) == want })
}

func (d *daemon) waitFor(what string, timeout time.Duration, cond func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		select {
		case err := <-d.done:
			d.done <- err
			d.t.Fatalf("callgate exited (%v) while waiting for %s", err, what)
		case <-time.After(20 * time.Millisecond):
		}
	}
	d.t.Fatalf("timed out waiting for %s", what)
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		d.exited = true
		if err != nil {
			d.t.Fatalf("callgate exited with %v after SIGTERM", err)
		}
	case <-time.After(15 * time.Second):
		d.t.Fatal("callgate did not stop after SIGTERM")
	}
}

// kill sends SIGKILL, as a crash would.
func (d *daemon) kill() {
	d.cmd.Process.Kill()
	<-d.done
	d.exited = true
}

func withTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func withCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}

func decodeJSON(res *http.Response, v any) error { return json.NewDecoder(res.Body).Decode(v) }
