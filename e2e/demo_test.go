package e2e

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// `callgate demo -duration 60s` runs the whole simulated office and exits 0
// with a summary that shows a call of every kind, recordings on disk and
// deliveries to both CRM stand-ins.
func TestDemoRunsEveryKindOfCall(t *testing.T) {
	cmd := exec.Command(binPath, "demo", "-duration", "60s", "-http", "127.0.0.1:0")
	var out, errs strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errs
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errs.String())
	}
	if d := time.Since(start); d < 60*time.Second || d > 90*time.Second {
		t.Fatalf("demo ran %s", d)
	}
	if strings.Contains(errs.String(), "WARNING: DATA RACE") {
		t.Fatalf("data race in the demo:\n%s", errs.String())
	}
	m := regexp.MustCompile(`summary: calls: (\d+) inbound answered, (\d+) outbound, (\d+) missed, (\d+) transferred, (\d+) click-to-call; ` +
		`(\d+) recordings on disk \(\d+ KiB\); RetailCRM got (\d+) popups and (\d+) history entries; Megaplan got (\d+) calls`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no summary in:\n%s", out.String())
	}
	names := []string{"inbound", "outbound", "missed", "transferred", "click-to-call", "recordings", "RetailCRM popups", "RetailCRM history", "Megaplan calls"}
	for i, name := range names {
		if n, _ := strconv.Atoi(m[i+1]); n < 1 {
			t.Errorf("%s: %d in the summary", name, n)
		}
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", out.String())
	}
}
