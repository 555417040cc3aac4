package configs

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"callgate/internal/testenv"
)

// The monitoring kit `make install` ships: Prometheus alerting rules with
// their unit tests, and a Grafana dashboard. The e2e test
// TestMonitoringKitNamesExportedMetrics checks the same metric names
// against a running callgate's /metrics.

const (
	rulesFile = "prometheus/callgate.rules.yml"
	dashboard = "grafana/callgate.json"
)

// pendingMetrics are named by the rules before callgate exports them.
var pendingMetrics []string

// metricName finds the names of callgate's metrics in a PromQL expression
// (Go and process metrics are the client library's, not listed).
var metricName = regexp.MustCompile(`\bcallgate_[a-z0-9_]+`)

// readmeMetrics are the metrics README's metrics table documents.
func readmeMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Metrics\n")
	if !ok {
		t.Fatal("README has no ## Metrics section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var names []string
	for line := range strings.SplitSeq(section, "\n") {
		if m := regexp.MustCompile("^\\| `(callgate_[a-z0-9_]+)` \\|").FindStringSubmatch(line); m != nil {
			names = append(names, m[1])
		}
	}
	if len(names) < 20 {
		t.Fatalf("README's metrics table lists %d metrics: %v", len(names), names)
	}
	return names
}

// documented reports whether name (possibly a histogram's _bucket, _sum or
// _count series) is in the list.
func documented(list []string, name string) bool {
	if slices.Contains(list, name) {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && slices.Contains(list, base) {
			return true
		}
	}
	return false
}

func TestPrometheusRules(t *testing.T) {
	promtool := testenv.NeedTool(t, "promtool")
	tests, _ := filepath.Glob("prometheus/*_test.yml")
	if len(tests) == 0 {
		t.Fatal("no rule unit tests in configs/prometheus")
	}
	for _, args := range [][]string{append([]string{"check", "rules"}, filepath.Base(rulesFile)), append([]string{"test", "rules"}, bases(tests)...)} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var unit strings.Builder
	for _, f := range tests {
		b, _ := os.ReadFile(f)
		unit.Write(b)
	}
	alerts := regexp.MustCompile(`(?m)^\s*- alert: (\w+)$`).FindAllStringSubmatch(string(rules), -1)
	if len(alerts) < 8 {
		t.Fatalf("%d alerts in %s", len(alerts), rulesFile)
	}
	for _, a := range alerts {
		// Each alert has a case where it fires (exp_labels) and one where
		// it is silent: an expression that never fires passes neither.
		fires := regexp.MustCompile(`alertname: ` + a[1] + `\n\s*exp_alerts:\n\s*- exp_labels:`)
		silent := regexp.MustCompile(`alertname: ` + a[1] + `\n\s*exp_alerts: \[\]`)
		if !fires.MatchString(unit.String()) || !silent.MatchString(unit.String()) {
			t.Errorf("alert %s needs a unit test where it fires and one where it stays silent", a[1])
		}
	}
	readme := readmeMetrics(t)
	for _, name := range metricName.FindAllString(string(rules), -1) {
		if !documented(readme, name) && !slices.Contains(pendingMetrics, name) {
			t.Errorf("the rules name %s, which README's metrics table does not list", name)
		}
	}
}

func bases(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}

// grafanaPanel is what the test reads of a dashboard panel.
type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's
}

// TestGrafanaDashboard checks the dashboard parses as Grafana reads it:
// every panel queries the datasource variable with expressions that name
// only documented callgate metrics, and panels do not overlap.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID, Title    string
		SchemaVersion int `json:"schemaVersion"`
		Templating    struct {
			List []struct{ Name, Type string }
		}
		Panels []grafanaPanel
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Fatalf("dashboard uid %q, title %q, schemaVersion %d", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" {
		t.Fatalf("no datasource variable: %v", vars)
	}
	readme := readmeMetrics(t)
	var all []grafanaPanel
	for _, p := range d.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	ids := map[int]bool{}
	covered := map[[2]int]string{}
	sections := map[string]bool{}
	for _, p := range all {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := covered[[2]int{x, y}]; ok {
					t.Fatalf("panels %q and %q overlap at %d,%d", other, p.Title, x, y)
				}
				covered[[2]int{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			sections[p.Title] = true
			continue
		}
		if p.Title == "" || p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %d %q: needs a title, the ${datasource} variable and a query", p.ID, p.Title)
		}
		for _, q := range p.Targets {
			names := metricName.FindAllString(q.Expr, -1)
			if len(names) == 0 || q.RefID == "" {
				t.Errorf("panel %q: query %q names no callgate metric", p.Title, q.Expr)
			}
			if strings.Count(q.Expr, "(") != strings.Count(q.Expr, ")") || strings.Count(q.Expr, "{") != strings.Count(q.Expr, "}") {
				t.Errorf("panel %q: unbalanced query %q", p.Title, q.Expr)
			}
			for _, n := range names {
				if !documented(readme, n) {
					t.Errorf("panel %q names %s, which README's metrics table does not list", p.Title, n)
				}
			}
		}
	}
	for _, s := range []string{"Calls", "Registrations", "CRM sync", "Storage"} {
		if !sections[s] {
			t.Errorf("no %q row", s)
		}
	}
}
