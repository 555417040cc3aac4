package routing

import (
	"errors"
	"strings"
	"testing"
	"time"

	"callgate/gateway/config"
	"callgate/gateway/directory"
	"callgate/sip/b2bua"

	"github.com/prometheus/client_golang/prometheus"
)

func intp(n int) *int { return &n }

// dialConfig: ivanov (two lines) and petrov (one) with the default rules,
// sidorov with his own, and the sales group.
func dialConfig() config.Config {
	cfg := config.Defaults()
	cfg.Employees = []config.Employee{
		{ID: "ivanov", Extensions: []string{"101", "102"}},
		{ID: "petrov", Extensions: []string{"103"}},
		{ID: "sidorov", Extensions: []string{"104"}, Dial: &config.DialRules{Allow: []string{"GB", "+78095050505"}, Deny: []string{"+7495"}, MaxConcurrent: intp(1)}},
		{ID: "kuznetsov", Extensions: []string{"105"}},
	}
	cfg.Groups = []config.Group{
		{ID: "export", Members: []string{"kuznetsov", "sidorov"}, Dial: &config.DialRules{Allow: []string{"+7", "KZ"}, CallsPerDay: intp(3)}},
		{ID: "later", Members: []string{"kuznetsov"}, Dial: &config.DialRules{Allow: []string{"+"}, Deny: []string{"+7916"}}},
	}
	cfg.Upstream.Accounts = []config.Account{{User: "sales1", Password: "x", Employee: "ivanov"}}
	return cfg
}

func TestDialRulesTable(t *testing.T) {
	cfg := dialConfig()
	d := NewDialRules(&cfg)
	cases := []struct {
		employee, number, rule string
	}{
		// The defaults: the region's fixed, mobile and toll-free numbers.
		{"ivanov", "8 916 123-45-67", ""},
		{"ivanov", "+7 (495) 111-22-33", ""},
		{"ivanov", "8 800 100 00 00", ""},
		{"ivanov", "8 804 333 33 33", ""},
		{"ivanov", "8 809 505 05 05", RulePremiumRate},
		{"ivanov", "8 803 100 00 00", RulePremiumRate},
		{"ivanov", "8 808 123 45 67", RuleNumberType},
		{"ivanov", "810 44 20 7946 0000", RuleInternational},
		{"ivanov", "+44 20 7946 0000", RuleInternational},
		{"ivanov", "+882 13 1234 5678", RuleInternational},
		{"ivanov", "+881 6 12345678", RuleInternational},
		{"ivanov", "+7 701 123 4567", RuleInternational}, // Kazakhstan shares +7
		{"ivanov", "8 727 123 4567", RuleInternational},
		{"ivanov", "+7 600 123 4567", RuleInternational}, // no plan knows it
		// Emergency numbers always go through.
		{"ivanov", "112", ""},
		{"ivanov", "01", ""},
		{"ivanov", "104", ""},
		{"sidorov", "112", ""},
		// sidorov's own lists: GB widened, one premium number named, Moscow denied.
		{"sidorov", "+44 20 7946 0000", ""},
		{"sidorov", "+44 909 879 0000", RulePremiumRate},
		{"sidorov", "8 809 505 05 05", ""},
		{"sidorov", "8 809 505 05 06", RulePremiumRate},
		{"sidorov", "+7 495 111 22 33", RuleDenied},
		{"sidorov", "+7 701 123 4567", RuleInternational}, // his allow replaces the group's
		// kuznetsov: the first group's allow (+7 and KZ), the later group's
		// deny; his own allow is unset.
		{"kuznetsov", "+7 701 123 4567", ""},
		{"kuznetsov", "+7 916 123 45 67", RuleDenied},
		{"kuznetsov", "+44 20 7946 0000", RuleInternational},
		{"kuznetsov", "8 809 505 05 05", RulePremiumRate},
		// Someone the configuration does not name gets [dial].
		{"nobody", "+79161234567", ""},
		{"nobody", "+442079460000", RuleInternational},
	}
	for _, c := range cases {
		n, err := Classify(c.number, "RU")
		if err != nil {
			t.Errorf("%s: %v", c.number, err)
			continue
		}
		if rule, detail := d.Check(c.employee, &n); rule != c.rule {
			t.Errorf("%s dials %q (%s, %s, type %d): rule %q (%s), want %q", c.employee, c.number, n.E164, n.Region, n.Type, rule, detail, c.rule)
		}
	}
}

func TestDialRulesGlobalLists(t *testing.T) {
	cfg := dialConfig()
	cfg.Dial.Allow = []string{"KZ", "+7727"}
	cfg.Dial.Deny = []string{"+7701", "+"}
	d := NewDialRules(&cfg)
	for number, want := range map[string]string{
		"+7 702 123 4567":  "",         // KZ over "+"
		"+7 701 123 4567":  RuleDenied, // the longer prefix wins
		"+7 727 123 4567":  "",         // a specific prefix lets even an unknown number through
		"+7 916 123 4567":  RuleDenied, // "+" denies the default region too
		"112":              "",         // but never emergency numbers
		"+44 20 7946 0000": RuleDenied, // denied, not only international
	} {
		n, _ := Classify(number, "RU")
		if rule, _ := d.Check("ivanov", &n); rule != want {
			t.Errorf("%q: %q, want %q", number, rule, want)
		}
	}
}

func TestDialLimits(t *testing.T) {
	cfg := dialConfig()
	cfg.Dial.MinutesPerDay = 10
	cfg.Dial.MaxConcurrentTotal = 6
	d := NewDialRules(&cfg)
	now := time.Date(2026, 12, 2, 20, 0, 0, 0, time.UTC) // 23:00 in Moscow
	d.now = func() time.Time { return now }
	n, _ := Classify("+74951112233", "RU")
	admit := func(emp string) (*Lease, string) {
		l, rule, _ := d.Admit(emp, &n)
		return l, rule
	}
	// petrov has one line: two calls at once, not three; ending one frees a place.
	a, _ := admit("petrov")
	b, _ := admit("petrov")
	if _, rule := admit("petrov"); rule != RuleConcurrent {
		t.Fatalf("third concurrent call: %q", rule)
	}
	b.End()
	b.End() // a second End changes nothing
	if d.Active("petrov") != 1 {
		t.Fatalf("active %d after an end", d.Active("petrov"))
	}
	c, rule := admit("petrov")
	if rule != "" {
		t.Fatalf("after one ended: %q", rule)
	}
	// ivanov has two lines: four; then the global cap of six holds everyone.
	var iv []*Lease
	for i := 0; i < 4; i++ {
		l, rule := admit("ivanov")
		if rule != "" {
			t.Fatalf("ivanov's call %d: %q", i+1, rule)
		}
		iv = append(iv, l)
	}
	if _, rule := admit("ivanov"); rule != RuleConcurrent {
		t.Fatalf("ivanov's fifth: %q", rule)
	}
	if _, rule := admit("nobody"); rule != RuleTotalConcurrent {
		t.Fatalf("beyond the global cap: %q", rule)
	}
	// Emergency calls pass every limit and take no place.
	e, _ := Classify("112", "RU")
	if l, rule, _ := d.Admit("ivanov", &e); l != nil || rule != "" {
		t.Fatalf("emergency call: %v %q", l, rule)
	}
	for _, l := range iv {
		l.End()
	}
	// Minutes per day: 6 minutes talked, then 5 more; the next call is refused.
	a.Answered()
	now = now.Add(6 * time.Minute)
	a.End()
	c.Answered()
	now = now.Add(5 * time.Minute)
	c.End()
	if _, rule := admit("petrov"); rule != RuleMinutesPerDay {
		t.Fatalf("after 11 minutes of 10: %q", rule)
	}
	// Calls per day: kuznetsov's group allows 3.
	for i := 0; i < 3; i++ {
		l, rule := admit("kuznetsov")
		if rule != "" {
			t.Fatalf("kuznetsov's call %d: %q", i+1, rule)
		}
		l.End()
	}
	if _, rule := admit("kuznetsov"); rule != RuleCallsPerDay {
		t.Fatalf("fourth call of the day: %q", rule)
	}
	// A new day in the office's zone (midnight in Moscow) starts the counts again.
	now = now.Add(50 * time.Minute)
	if l, rule := admit("kuznetsov"); rule != "" {
		t.Fatalf("next day: %q", rule)
	} else {
		l.End()
	}
	if l, rule := admit("petrov"); rule != "" {
		t.Fatalf("next day's minutes: %q", rule)
	} else {
		l.End()
	}
	if d.total != 0 || d.Active("petrov") != 0 {
		t.Fatalf("places left taken: total %d", d.total)
	}
}

// The router refuses with a b2bua.Refusal (403 and the rule in the reason
// phrase), counts and logs it; transfers use the transferor's rules.
func TestRouterRefusesByDialRules(t *testing.T) {
	cfg := dialConfig()
	r := New(&cfg, directory.New(&cfg))
	var log strings.Builder
	r.Log = newTextLogger(&log)
	_, err := r.Outbound("101", "88095050505")
	var ref *b2bua.Refusal
	if !errors.As(err, &ref) || ref.Status != 403 || ref.Reason != "Dial Rule: premium-rate" || ref.Rule != RulePremiumRate {
		t.Fatalf("premium-rate call: %v", err)
	}
	if _, err := r.Transfer("104", "+442079460000"); err != nil {
		t.Fatalf("sidorov may transfer to GB: %v", err)
	}
	if _, err := r.Transfer("101", "+442079460000"); !errors.As(err, &ref) || ref.Rule != RuleInternational {
		t.Fatalf("ivanov's transfer to GB: %v", err)
	}
	if _, _, err := r.ClickToCall("ivanov", "+882 13 1234 5678", ""); !errors.As(err, &ref) || ref.Rule != RuleInternational {
		t.Fatalf("click-to-call to +882: %v", err)
	}
	if got := refusedCount(t, r, RuleInternational); got != 2 {
		t.Fatalf("international refusals counted %v", got)
	}
	if !strings.Contains(log.String(), "employee=ivanov number=+78095050505 rule=premium-rate") || !strings.Contains(log.String(), "via=transfer") {
		t.Fatalf("log:\n%s", log.String())
	}
	route, err := r.Outbound("103", "112")
	if err != nil || route.Number != "112" || route.Lease != nil {
		t.Fatalf("emergency call: %+v %v", route, err)
	}
	route, err = r.Outbound("103", "89161234567")
	if err != nil || route.Lease == nil {
		t.Fatalf("a call under the limits has a lease: %+v %v", route, err)
	}
	route.Lease.End()
}

// refusedCount reads callgate_dial_refused_total{rule} as /metrics would.
func refusedCount(t *testing.T, r *Router, rule string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(r.DialRefused)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != len(RuleNames) {
		t.Fatalf("gather: %v %v", mfs, err)
	}
	for _, m := range mfs[0].GetMetric() {
		if m.GetLabel()[0].GetValue() == rule {
			return m.GetCounter().GetValue()
		}
	}
	return -1
}
