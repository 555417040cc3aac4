package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	for _, want := range []string{"Type=notify", "WatchdogSec=", "User=callgate", "StateDirectory=callgate", "RuntimeDirectory=callgate", "ConfigurationDirectory=callgate",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE\n", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", "ProtectSystem=strict", "NoNewPrivileges=yes",
		"PrivateTmp=yes", "RestrictAddressFamilies=", "SystemCallFilter=@system-service", "\nExecReload=/usr/local/bin/callgate check-config -config /etc/callgate/callgate.toml\nExecReload=/bin/kill -HUP $MAINPID\n"} {
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

// The unit must not restart callgate on the database exit code.
func TestUnitDoesNotRestartOnDamagedDatabase(t *testing.T) {
	unit, err := os.ReadFile("../../systemd/callgate.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), fmt.Sprintf("\nRestartPreventExitStatus=%d\n", exitDatabase)) {
		t.Fatalf("unit lacks RestartPreventExitStatus=%d", exitDatabase)
	}
}
