package e2e

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runCLI runs the binary with args, stdin as its input, and returns its
// stdout, stderr and exit code.
func runCLI(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestSecondInstanceFailsAtOnce(t *testing.T) {
	cfg := newDaemonConfig(t, "")
	d := startDaemon(t, cfg)
	second := cfg
	second.SIPPort, second.HTTPPort = freePort(t), freePort(t) // only the data_dir is shared
	path := filepath.Join(t.TempDir(), "second.toml")
	os.WriteFile(path, []byte(second.toml()), 0o600)
	start := time.Now()
	_, errs, code := runCLI(t, "", "run", "-config", path)
	if code != 3 || !strings.Contains(errs, "locked by another callgate process") {
		t.Fatalf("second instance: exit %d, %q", code, errs)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("second instance took %s to fail", time.Since(start))
	}
	d.stop()
}

func TestBusyPortFailsStart(t *testing.T) {
	cfg := newDaemonConfig(t, "")
	d := startDaemon(t, cfg)
	other := cfg
	other.DataDir, other.HTTPPort = t.TempDir(), freePort(t)
	path := filepath.Join(t.TempDir(), "other.toml")
	os.WriteFile(path, []byte(other.toml()), 0o600)
	_, errs, code := runCLI(t, "", "run", "-config", path)
	if code != 3 || !strings.Contains(errs, "address already in use") {
		t.Fatalf("busy port: exit %d, %q", code, errs)
	}
	d.stop()
}

func TestSecretsNotLogged(t *testing.T) {
	d := startDaemon(t, newDaemonConfig(t, upstreamSection("127.0.0.1:9")))
	d.waitFor("an upstream attempt", 5*time.Second, func() bool { return strings.Contains(d.log.String(), "upstream registration") })
	d.stop()
	for _, secret := range []string{"Secret123", "Phone101pass", "Phone103pass", testToken} {
		if strings.Contains(d.log.String(), secret) {
			t.Fatalf("log contains the secret %q", secret)
		}
	}
}

// TestSdNotifyReadyWatchdogStopping plays systemd's notify socket.
func TestSdNotifyReadyWatchdogStopping(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := make(chan string, 64)
	go func() {
		buf := make([]byte, 512)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	cfg := newDaemonConfig(t, "")
	cfg.Env = []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=200000"}
	d := startDaemon(t, cfg)
	want := func(msg string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case m := <-got:
				if strings.Contains(m, msg) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s on the notify socket", msg)
			}
		}
	}
	want("STATUS=checking the database")
	want("EXTEND_TIMEOUT_USEC=") // before READY: a large database's check cannot time the start out
	want("READY=1")
	want("WATCHDOG=1")
	want("WATCHDOG=1")
	d.stop()
	want("STOPPING=1")
}
