package routing

import (
	"strings"
	"testing"
)

// BenchmarkDialRuleCheck is the dial rules' work per call on a number
// already normalised: the lists and defaults, then a place under the limits
// taken and given back.
func BenchmarkDialRuleCheck(b *testing.B) {
	cfg := dialConfig()
	cfg.Dial.Allow = []string{"KZ", "BY", "+7727"}
	cfg.Dial.Deny = []string{"+7809", "+7803", "+7495000"}
	cfg.Dial.CallsPerDay, cfg.Dial.MinutesPerDay, cfg.Dial.MaxConcurrentTotal = 1<<30, 1<<20, 100
	d := NewDialRules(&cfg)
	n, err := Classify("+7 916 123-45-67", "RU")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		l, rule, _ := d.Admit("ivanov", &n)
		if rule != "" {
			b.Fatal(rule)
		}
		l.Answered()
		l.End()
	}
}

// BenchmarkDialRuleRefusal: the same for a number the rules refuse.
func BenchmarkDialRuleRefusal(b *testing.B) {
	cfg := dialConfig()
	d := NewDialRules(&cfg)
	n, _ := Classify("8 809 505 05 05", "RU")
	b.ReportAllocs()
	for b.Loop() {
		if _, rule, _ := d.Admit("ivanov", &n); rule != RulePremiumRate {
			b.Fatal(rule)
		}
	}
}

// BenchmarkClassify is the normalisation the rules need first (phonenumbers
// parsing, region and type), measured apart.
func BenchmarkClassify(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Classify("8 916 123-45-67", "RU"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNormalize is Normalize alone (E.164 without region and type).
func BenchmarkNormalize(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Normalize("8 916 123-45-67", "RU"); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzClassify: whatever a phone dials or an API client sends, reading it
// does not panic, an accepted number is E.164, and the rules
// decide on it without panicking.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"8 916 123-45-67", "+79161234567", "810 44 20 7946 0000", "+882 13 1234 5678", "8 809 505 05 05",
		"112", "01", "*77*1234", "+", "", "８９１６１２３４５６７", "\xff\xfe", "+7 (916) 123 45 67 ext. 5", "tel:+79161234567"} {
		f.Add(s)
	}
	cfg := dialConfig()
	d := NewDialRules(&cfg)
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Classify(s, "RU")
		if err != nil {
			return
		}
		if !n.Emergency {
			// phonenumbers does not always read its own output back the same
			// (leading zeros), so only the form is checked.
			if len(n.E164) < 2 || len(n.E164) > 16 || n.E164[0] != '+' || strings.Trim(n.E164[1:], "0123456789") != "" {
				t.Fatalf("%q -> %q is not E.164", s, n.E164)
			}
			_, _ = Classify(n.E164, "RU")
		}
		for _, emp := range []string{"ivanov", "sidorov", "kuznetsov"} {
			if l, _, _ := d.Admit(emp, &n); l != nil {
				l.End()
			}
		}
	})
}
