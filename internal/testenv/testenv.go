// Package testenv is what the command's and the end-to-end tests need of
// the machine they run on: the callgate binary built once, and the Debian
// peers (sipp, baresip, Linphone, Chromium...) found on PATH. In CI
// (CI set in the environment) a missing peer fails the test: .ci/run
// installs every one, so a skip there would hide a missing install step.
// Elsewhere the test is skipped with the reason and the way to install.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// InCI reports whether the tests run in CI, where nothing may be skipped
// for something the machine lacks.
func InCI() bool { return os.Getenv("CI") != "" }

// Unavailable ends a test that cannot run on this machine: it fails in CI
// and is skipped, with the reason, elsewhere.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("in CI: "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}

// NeedTool is the path of the program name, or ends the test through
// Unavailable when it is not installed.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s is not installed (run `make deps`, or .ci/run in CI, to install it)", name)
	}
	return p
}

// BuildCallgate builds callgate/cmd/callgate into a new temporary
// directory, with the race detector when race is set (so `go test -race`
// also checks the running daemon). It returns the binary and a function
// that removes it.
func BuildCallgate(race bool) (bin string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "callgate-test-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "callgate")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, "callgate/cmd/callgate")...).CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build callgate: %w\n%s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// MountTmpfs mounts a tmpfs of size (mount's syntax: "2m") on dir, made
// if missing, for the test's lifetime: a small filesystem a test can fill.
// Mounting needs root; CI runs as root, so only elsewhere is the test
// skipped without it.
func MountTmpfs(t testing.TB, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "mounting a tmpfs needs root (CI runs as root)")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		Unavailable(t, "mount -t tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		// Lazy: a daemon under test may still hold the directory.
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}
