package e2e

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

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
		t.Skipf("skipped in the namespace:\n%s", tail(text, 2000))
	}
	if err != nil || !strings.Contains(text, "--- PASS: "+t.Name()) {
		if strings.Contains(text, "unshare: ") && os.Getenv("CI") == "" {
			t.Skipf("skipping: cannot make a network namespace here (needs root or user namespaces):\n%s", text)
		}
		t.Fatalf("in a loopback-only network namespace: %v\n%s", err, text)
	}
	if testing.Verbose() {
		t.Logf("ran in a loopback-only network namespace:\n%s", tail(text, 4000))
	}
	return false
}
