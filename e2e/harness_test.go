// Package e2e runs the built callgate binary as a daemon and drives it
// with independent SIP, RTP and HTTP peers: the Go phone and VPBX
// stand-ins, sipp, baresip, Linphone, headless Chromium and the CRM
// stand-ins. This file builds the binary and starts, queries and stops the
// daemon; office_test.go sets up an office (the daemon, a VPBX stand-in
// and registered phones) and peers_test.go the CRMs, the browser and
// Linphone around it.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"callgate/gateway/api/apitest"
	"callgate/internal/testenv"
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
	bin, remove, err := testenv.BuildCallgate(raceEnabled)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = bin
	code := m.Run()
	remove()
	os.Exit(code)
}

// needTool is a peer's path; see testenv.NeedTool.
func needTool(t *testing.T, name string) string { return testenv.NeedTool(t, name) }

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
	// ControlSocket is control.socket: a path of the test's own, so that
	// daemons running side by side never share one.
	ControlSocket string
	// NoNetlink runs callgate denied AF_NETLINK sockets, as the shipped
	// systemd unit does (see noNetlinkEnv).
	NoNetlink bool
	// Format is recording.format; "" keeps recordings as WAV, which the
	// tests that check a recording's tones read while the call's legs end
	// (the Ogg Opus tests set "opus").
	Format string
}

func (c daemonConfig) toml() string {
	format := c.Format
	if format == "" {
		format = "wav"
	}
	doc := c.base()
	if i := strings.Index(doc, "\n[recording]\n"); i >= 0 {
		i += len("\n[recording]\n")
		return doc[:i] + fmt.Sprintf("format = %q\n", format) + doc[i:]
	}
	return doc + fmt.Sprintf("\n[recording]\nformat = %q\n", format)
}

func (c daemonConfig) base() string {
	return fmt.Sprintf(`data_dir = %q
[control]
socket = %q
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
%s`, c.DataDir, c.ControlSocket, c.SIPPort, c.SIPPort, c.SIPExtra, c.HTTPPort, testToken, c.HTTPExtra, c.IvanovExtra, c.PetrovExtra, c.Extra)
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
	return daemonConfig{DataDir: t.TempDir(), SIPPort: freePort(t), HTTPPort: freePort(t), Extra: extra,
		ControlSocket: filepath.Join(shortTempDir(t), "control.sock")}
}

// shortTempDir is a temporary directory with a short path: a unix socket's
// path must fit in 107 bytes, which t.TempDir's (named after the test) may
// not.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
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
	if cfg.NoNetlink {
		d.cmd.Path = os.Args[0] // the wrapper execs binPath in its place
		d.cmd.Env = append(d.cmd.Env, noNetlinkEnv+"="+binPath)
	}
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

// do sends a request to an API path (or a whole URL) with token, when not
// empty, and header name-value pairs, and returns the answer with its body.
func (d *daemon) do(t *testing.T, method, url, token string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	if strings.HasPrefix(url, "/") {
		url = d.url(url)
	}
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

// post sends a JSON body with a token and decodes the JSON answer.
func (d *daemon) post(t *testing.T, path, token string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", d.url(path), strings.NewReader(string(b)))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

// apiCode is the error code of an API error answer.
func apiCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
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

// liveEvent is an event of the live stream with the data the tests check.
type liveEvent struct {
	ID, Kind string
	Data     struct {
		CallID     string   `json:"call_id"`
		Caller     string   `json:"caller"`
		Outside    string   `json:"outside_number"`
		Employees  []string `json:"employees"`
		AnsweredBy string   `json:"answered_by"`
		Result     string   `json:"result"`
	}
}

// events connects to /api/v1/events with token; it returns once the stream
// is connected.
func (d *daemon) events(t *testing.T, token, lastID string) <-chan apitest.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := apitest.Subscribe(ctx, nil, d.url(""), token, lastID)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func nextEvent(t *testing.T, ch <-chan apitest.Event) liveEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("event stream ended")
		}
		le := liveEvent{ID: ev.ID, Kind: ev.Kind}
		if err := json.Unmarshal(ev.Data, &le.Data); err != nil {
			t.Fatalf("event data %s: %v", ev.Data, err)
		}
		return le
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return liveEvent{}
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

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func itoa(i int) string { return strconv.Itoa(i) }

// Environment of a test re-run inside a loopback-only network namespace.
const (
	netnsEnv    = "CALLGATE_E2E_NETNS"
	netnsBinEnv = "CALLGATE_E2E_BIN"
)

// inLoopbackNetns makes the calling (top-level) test run in a network
// namespace whose only interface is loopback. Peers such as Linphone
// advertise every address the machine has; there they can only find
// 127.0.0.1, so no media can leave loopback. The first call re-runs the
// test in a fresh namespace and returns false (the caller returns); in the
// re-run it returns true.
func inLoopbackNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsEnv) == "1" {
		ifs, err := net.Interfaces()
		if err != nil || len(ifs) != 1 || ifs[0].Flags&net.FlagLoopback == 0 {
			t.Fatalf("not in a loopback-only namespace: %v %v", ifs, err)
		}
		return true
	}
	unshare := needTool(t, "unshare")
	needTool(t, "ip")
	args := []string{"-n"}
	if os.Geteuid() != 0 {
		// A user namespace gives an unprivileged user its own network one.
		args = []string{"-r", "-n"}
	}
	timeout := 5 * time.Minute
	if dl, ok := t.Deadline(); ok {
		timeout = time.Until(dl) - 5*time.Second
	}
	args = append(args, "--", "sh", "-c", `ip link set lo up && exec "$@"`, "sh",
		os.Args[0], "-test.run", "^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.timeout", timeout.String())
	cmd := exec.Command(unshare, args...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1", netnsBinEnv+"="+binPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := out.String()
	if strings.Contains(text, "--- SKIP: "+t.Name()) {
		// The re-run skips only outside CI (a missing peer); in CI it fails.
		testenv.Unavailable(t, "in the namespace:\n%s", tail(text, 2000))
	}
	if err != nil || !strings.Contains(text, "--- PASS: "+t.Name()) {
		if strings.Contains(text, "unshare: ") {
			testenv.Unavailable(t, "cannot make a network namespace here (needs root or user namespaces):\n%s", text)
		}
		t.Fatalf("in a loopback-only network namespace: %v\n%s", err, text)
	}
	if testing.Verbose() {
		t.Logf("ran in a loopback-only network namespace:\n%s", tail(text, 4000))
	}
	return false
}
