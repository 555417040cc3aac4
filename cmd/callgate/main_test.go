package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The command-line tests run the real binary, built once for the package.
// The tests that run the daemon and drive it with phones, a VPBX, CRMs and
// a browser are in e2e/ at the module root.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "callgate-cli-")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "callgate")
	args := []string{"build", "-o", binPath}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build callgate: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needTool fails in CI when a tool is missing (CI installs it) and skips
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
