package main

import (
	"bytes"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"callgate/internal/testenv"
)

func TestMakeInstallHonoursDestdirAndPrefix(t *testing.T) {
	mk := needTool(t, "make")
	dest := t.TempDir()
	out, err := exec.Command(mk, "-C", "../..", "install", "DESTDIR="+dest, "PREFIX=/opt/cg").CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"opt/cg/bin/callgate", "lib/systemd/system/callgate.service", "usr/lib/sysusers.d/callgate.conf",
		"usr/lib/tmpfiles.d/callgate.conf", "etc/callgate/callgate.toml", "opt/cg/share/doc/callgate/README.md", "opt/cg/share/doc/callgate/docs/install.md",
		"opt/cg/share/doc/callgate/docs/api.md", "opt/cg/share/doc/callgate/docs/fail2ban/jail-callgate.conf", "opt/cg/share/doc/callgate/configs/callgate.toml",
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

// TestInstalledServiceUserReadsConfig installs into a DESTDIR, gives the
// tree the ownership a real root install gives / (make install-owners: the
// shipped sysusers.d and tmpfiles.d snippets), and runs the installed
// binary as the unprivileged callgate user against the installed config,
// as the unit's ExecStartPre does. Before install-owners the same command
// must fail, which shows it really runs without root's rights.
func TestInstalledServiceUserReadsConfig(t *testing.T) {
	mk := needTool(t, "make")
	sysusers := needTool(t, "systemd-sysusers")
	needTool(t, "systemd-tmpfiles")
	analyze := needTool(t, "systemd-analyze")
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "creating the callgate user and running a command as it needs root (CI runs as root)")
	}
	// The callgate user must be able to reach the binary and the config.
	dest, err := os.MkdirTemp("", "callgate-install-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dest) })
	if err := os.Chmod(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mk, "-C", "../..", "install", "DESTDIR="+dest, "PREFIX=/opt/cg").CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	// The machine's callgate user, created from the shipped snippet as
	// `make install` does when it is missing; the tree's user database
	// names the same ids, as on the machine a package is installed on.
	if out, err := exec.Command(sysusers, filepath.Join(dest, "usr/lib/sysusers.d/callgate.conf")).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	u, err := user.Lookup("callgate")
	if err != nil {
		t.Fatalf("the sysusers snippet did not create the callgate user: %v", err)
	}
	g, err := user.LookupGroup("callgate")
	if err != nil {
		t.Fatalf("the sysusers snippet did not create the callgate group: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(g.Gid)
	writeFile(t, filepath.Join(dest, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\ncallgate:x:"+u.Uid+":"+g.Gid+"::/var/lib/callgate:/usr/sbin/nologin\n", 0o644)
	writeFile(t, filepath.Join(dest, "etc/group"), "root:x:0:\ncallgate:x:"+g.Gid+":\n", 0o644)

	bin := filepath.Join(dest, "opt/cg/bin/callgate")
	conf := filepath.Join(dest, "etc/callgate/callgate.toml")
	asCallgate := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
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
	if _, errs, code := asCallgate("check-config", "-config", conf); code == 0 || !strings.Contains(errs, "permission denied") {
		t.Fatalf("before install-owners, the callgate user read a root:root config (exit %d, %q): the test does not run unprivileged", code, errs)
	}

	if out, err := exec.Command(mk, "-C", "../..", "--no-print-directory", "install-owners", "DESTDIR="+dest).CombinedOutput(); err != nil {
		t.Fatalf("make install-owners: %v\n%s", err, out)
	}
	for _, c := range []struct {
		path     string
		mode     os.FileMode
		uid, gid int
	}{
		{"etc/callgate", os.ModeDir | 0o750, 0, gid},
		{"etc/callgate/callgate.toml", 0o640, 0, gid},
		{"var/lib/callgate", os.ModeDir | 0o750, uid, gid},
	} {
		fi, err := os.Stat(filepath.Join(dest, c.path))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != c.mode || int(st.Uid) != c.uid || int(st.Gid) != c.gid {
			t.Errorf("/%s: %v %d:%d, want %v %d:%d", c.path, fi.Mode(), st.Uid, st.Gid, c.mode, c.uid, c.gid)
		}
	}
	out, errs, code := asCallgate("check-config", "-config", conf)
	if code != 0 || strings.TrimSpace(out) != "ok" {
		t.Fatalf("check-config as the callgate user: exit %d, %q %q", code, out, errs)
	}
	// The installed config is the example: -strict refuses it.
	if _, errs, code := asCallgate("check-config", "-strict", "-config", conf); code != exitConfig || !strings.Contains(errs, "warning: ") {
		t.Fatalf("check-config -strict on the example config: exit %d, %q", code, errs)
	}

	// The installed unit as systemd would load it from that tree, with the
	// machine's own units it depends on.
	if out, err := exec.Command("cp", "-a", "-n", "/lib/systemd/system/.", filepath.Join(dest, "lib/systemd/system")).CombinedOutput(); err != nil {
		t.Fatalf("copy the system units: %v\n%s", err, out)
	}
	// and the system's kill(1), which ExecReload= runs.
	if err := os.MkdirAll(filepath.Join(dest, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-L", "/bin/kill", filepath.Join(dest, "bin/kill")).CombinedOutput(); err != nil {
		t.Fatalf("copy kill: %v\n%s", err, out)
	}
	if out, err := exec.Command(analyze, "verify", "--root="+dest, "callgate.service").CombinedOutput(); err != nil || strings.Contains(string(out), "callgate.service") {
		t.Fatalf("systemd-analyze verify of the installed unit: %v\n%s", err, out)
	}
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}
