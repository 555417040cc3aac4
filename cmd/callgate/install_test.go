package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMakeInstallHonoursDestdirAndPrefix(t *testing.T) {
	mk := needTool(t, "make")
	dest := t.TempDir()
	out, err := exec.Command(mk, "-C", "../..", "install", "DESTDIR="+dest, "PREFIX=/opt/cg").CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"opt/cg/bin/callgate", "lib/systemd/system/callgate.service", "usr/lib/sysusers.d/callgate.conf",
		"etc/callgate/callgate.toml", "opt/cg/share/doc/callgate/README.md", "opt/cg/share/doc/callgate/install.md",
		"opt/cg/share/callgate/prometheus/callgate.rules.yml", "opt/cg/share/callgate/grafana/callgate.json"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("not installed: %s", f)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "lib/systemd/system/callgate.service"))
	if !strings.Contains(string(unit), "ExecStart=/opt/cg/bin/callgate run") {
		t.Fatalf("unit does not point at the installed binary:\n%s", unit)
	}
}
