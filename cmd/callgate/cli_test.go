package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

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

func TestCheckConfigReference(t *testing.T) {
	out, errs, code := runCLI(t, "", "check-config", "-config", "../../configs/callgate.toml")
	if code != 0 || strings.TrimSpace(out) != "ok" {
		t.Fatalf("configs/callgate.toml: exit %d, %q %q", code, out, errs)
	}
	out, errs, code = runCLI(t, "", "check-config", "-config", "../../configs/demo.toml")
	if code != 0 || strings.TrimSpace(out) != "ok" {
		t.Fatalf("configs/demo.toml: exit %d, %q %q", code, out, errs)
	}
}

func TestCheckConfigBroken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(path, []byte("[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"x\"\nlisten_typo = 1\n[media]\nrtp_ports = \"1-2\"\n"), 0o600)
	_, errs, code := runCLI(t, "", "check-config", "-config", path)
	if code != 1 || !strings.Contains(errs, path+":4: unknown key \"sip.listen_typo\"") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	_, errs, code = runCLI(t, "", "check-config", "-config", filepath.Join(t.TempDir(), "missing.toml"))
	if code != 1 || !strings.Contains(errs, "no such file") {
		t.Fatalf("missing file: exit %d %q", code, errs)
	}
	if _, _, code := runCLI(t, "", "frobnicate"); code != 2 {
		t.Fatalf("unknown command exit %d", code)
	}
}

func TestVersionAndHashPassword(t *testing.T) {
	out, _, code := runCLI(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "callgate ") {
		t.Fatalf("version: %d %q", code, out)
	}
	out, _, code = runCLI(t, "Console-Pass-1\n", "hash-password")
	if code != 0 {
		t.Fatalf("hash-password exit %d", code)
	}
	h := strings.TrimSpace(out)
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("Console-Pass-1")) != nil || strings.Contains(out, "Console-Pass-1") {
		t.Fatalf("hash %q does not match the password", h)
	}
	if _, _, code := runCLI(t, "short\n", "hash-password"); code != 2 {
		t.Fatalf("short password exit %d", code)
	}
}

// When the demo's HTTP port is taken, the message names the -http flag
// that picks another.
func TestDemoPortInUseNamesTheFlag(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	_, errs, code := runCLI(t, "", "demo", "-http", l.Addr().String(), "-duration", "20s")
	want := "callgate demo: port " + port + " is in use: choose another with -http 127.0.0.1:PORT"
	if code != exitRuntime || !strings.Contains(errs, want) {
		t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, errs, exitRuntime, want)
	}
}
