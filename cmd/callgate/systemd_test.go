package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on the shipped unit,
// pointed at the freshly built binary, and checks the hardening it promises.
func TestSystemdUnitVerifies(t *testing.T) {
	sa := needTool(t, "systemd-analyze")
	unit, err := os.ReadFile("../../systemd/callgate.service")
	if err != nil {
		t.Fatal(err)
	}
	text := string(unit)
	for _, want := range []string{"Type=notify", "WatchdogSec=", "User=callgate", "StateDirectory=callgate", "ConfigurationDirectory=callgate",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE\n", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", "ProtectSystem=strict", "NoNewPrivileges=yes",
		"PrivateTmp=yes", "RestrictAddressFamilies=", "SystemCallFilter=@system-service"} {
		if !strings.Contains(text, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "callgate.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "/usr/local/bin/callgate", binPath)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "callgate.service") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
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
	want("READY=1")
	want("WATCHDOG=1")
	want("WATCHDOG=1")
	d.stop()
	want("STOPPING=1")
}
