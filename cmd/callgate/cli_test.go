package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// The reference config is valid but warned about; -strict refuses it, and
// accepts a config without warnings.
func TestCheckConfigWarnings(t *testing.T) {
	ref := "../../configs/callgate.toml"
	out, errs, code := runCLI(t, "", "check-config", "-config", ref)
	if code != 0 || strings.TrimSpace(out) != "ok" {
		t.Fatalf("exit %d, %q %q", code, out, errs)
	}
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	wantWarn := regexp.MustCompile(`^` + regexp.QuoteMeta(ref) + `:[0-9]+: warning: .+ \(hint: .+\)$`)
	for _, l := range lines {
		if !wantWarn.MatchString(l) {
			t.Errorf("not a FILE:LINE: warning: ... (hint: ...) line: %q", l)
		}
	}
	for _, want := range []string{"upstream.account[0].password: is the example value", "employee[0].sip_password: is the example value",
		"http.api_tokens[0]: is the example value", "employee[0].password_hash: is the example value", "http.listen: the console listens on loopback only"} {
		if !strings.Contains(errs, want) {
			t.Errorf("no warning %q in:\n%s", want, errs)
		}
	}
	for _, secret := range []string{"Secret123", "Phone101pass", "change-me-to-a-long-random-token", "$2a$"} {
		if strings.Contains(errs, secret) {
			t.Errorf("a warning shows the secret %q", secret)
		}
	}
	out, errs, code = runCLI(t, "", "check-config", "-strict", "-config", ref)
	if code != exitConfig || strings.Contains(out, "ok") || !strings.Contains(errs, "refused with -strict") {
		t.Fatalf("-strict: exit %d, %q %q", code, out, errs)
	}

	quiet := filepath.Join(t.TempDir(), "quiet.toml")
	hash, err := bcrypt.GenerateFromPassword([]byte("Office-Admin-7"), 4)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(quiet, []byte("[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\n[[employee]]\nid = \"boss\"\nextensions = [\"101\"]\n"+
		"sip_password = \"a9Kc2LpQ0xRv\"\nrole = \"admin\"\npassword_hash = \""+string(hash)+"\"\n"), 0o600)
	out, errs, code = runCLI(t, "", "check-config", "-strict", "-config", quiet)
	if code != 0 || strings.TrimSpace(out) != "ok" || errs != "" {
		t.Fatalf("-strict without warnings: exit %d, %q %q", code, out, errs)
	}
}

// run logs the warnings once at start, without the secrets they are about.
func TestRunLogsWarningsOnce(t *testing.T) {
	dir := t.TempDir()
	ref, err := os.ReadFile("../../configs/callgate.toml")
	if err != nil {
		t.Fatal(err)
	}
	// data_dir is a file: the gateway cannot start, after the warnings.
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, nil, 0o600)
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, bytes.Replace(ref, []byte(`data_dir = "/var/lib/callgate"`), []byte(`data_dir = "`+notDir+`"`), 1), 0o600)
	_, errs, code := runCLI(t, "", "run", "-config", cfg)
	if code != exitRuntime {
		t.Fatalf("exit %d: %s", code, errs)
	}
	_, checked, _ := runCLI(t, "", "check-config", "-config", cfg)
	want := strings.Count(checked, ": warning: ")
	if n := strings.Count(errs, "configuration warning"); n != want || want < 5 || !strings.Contains(errs, "upstream.account[0].password: is the example value") {
		t.Fatalf("%d warnings logged, want the %d check-config prints:\n%s", n, want, errs)
	}
	for _, secret := range []string{"Secret123", "Phone101pass", "Phone103pass", "change-me-to-a-long-random-token", "$2a$"} {
		if strings.Contains(errs, secret) {
			t.Errorf("the log shows the secret %q", secret)
		}
	}
}

func TestCheckConfigBroken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(path, []byte("[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nrealm = \"x\"\nlisten_typo = 1\n[media]\nrtp_ports = \"1-2\"\n"), 0o600)
	_, errs, code := runCLI(t, "", "check-config", "-config", path)
	if code != 1 || !strings.Contains(errs, path+":4: unknown key \"sip.listen_typo\"") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	// Every problem in one run: an unknown key, a wrong type, a duration
	// without unit and an invalid value, in the order of the lines.
	os.WriteFile(path, []byte("[sip]\nmin_expires = 60\nlisten_typo = 1\nmax_contacts = \"5\"\n[media]\nrtp_ports = \"1-2\"\n"), 0o600)
	_, errs, code = runCLI(t, "", "check-config", "-config", path)
	want := []string{
		path + `:2: sip.min_expires: 60 is not a duration: a TOML integer has no unit (hint: use "60s")`,
		path + `:3: unknown key "sip.listen_typo"`,
		path + `:4: sip.max_contacts: wrong type: got a TOML string, want an integer (hint: remove the quotes: max_contacts = 5)`,
		path + `:6: media.rtp_ports: ports must be within 1024-65535`,
	}
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	if code != 1 || len(lines) != len(want) {
		t.Fatalf("exit %d, stderr:\n%s", code, errs)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: %q, want %q", i+1, lines[i], w)
		}
		if strings.Contains(lines[i], "config.") {
			t.Errorf("a Go type name: %q", lines[i])
		}
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
