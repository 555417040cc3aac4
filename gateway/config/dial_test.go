package config

import (
	"errors"
	"strings"
	"testing"
)

func TestDialConfig(t *testing.T) {
	doc := goodBase + `[employee.dial]
allow = ["+44", "GB"]
deny = []
max_concurrent = 0
calls_per_day = 50
[[group]]
id = "sales"
members = ["ivanov"]
[group.dial]
minutes_per_day = 120
[dial]
allow = ["+7", "KZ"]
deny = ["+7809"]
max_concurrent_total = 10
`
	c, err := Parse("good.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Dial.PerLine != 2 || c.Dial.MaxConcurrentTotal != 10 || len(c.Dial.Allow) != 2 || c.Dial.Deny[0] != "+7809" {
		t.Fatalf("[dial] %+v", c.Dial)
	}
	e := c.Employees[0].Dial
	if e == nil || len(e.Allow) != 2 || e.Deny == nil || len(e.Deny) != 0 || e.MaxConcurrent == nil || *e.MaxConcurrent != 0 ||
		e.CallsPerDay == nil || *e.CallsPerDay != 50 || e.MinutesPerDay != nil {
		t.Fatalf("[employee.dial] %+v: an empty list must stay set (it replaces the inherited one), an absent key unset", e)
	}
	g := c.Groups[0].Dial
	if g == nil || g.Allow != nil || g.MinutesPerDay == nil || *g.MinutesPerDay != 120 {
		t.Fatalf("[group.dial] %+v", g)
	}
	d, err := Parse("good.toml", []byte(goodBase))
	if err != nil || d.Dial.PerLine != 2 || d.Dial.Allow != nil || d.Employees[0].Dial != nil {
		t.Fatalf("defaults: %+v %v", d.Dial, err)
	}
}

func TestBrokenDialConfigs(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"lower-case country", "[dial]\nallow = [\"kz\"]\n", `2: dial.allow[0]: "kz" is neither an E.164 prefix nor a country code`},
		{"unknown country", "[dial]\ndeny = [\n \"+7\",\n \"XX\",\n]\n", `4: dial.deny[1]: "XX" is not a country phonenumbers knows`},
		{"prefix with spaces", "[dial]\nallow = [\"+7 809\"]\n", `2: dial.allow[0]: "+7 809": an E.164 prefix is "+" and digits only`},
		{"prefix without plus", "[dial]\nallow = [\"7809\"]\n", `2: dial.allow[0]: "7809" is neither`},
		{"prefix too long", "[dial]\nallow = [\"+1234567890123456\"]\n", `2: dial.allow[0]: "+1234567890123456" is longer than an E.164 number`},
		{"allowed and denied", "[dial]\nallow = [\"KZ\"]\ndeny = [\"KZ\"]\n", `3: dial.deny[0]: "KZ" is both allowed and denied (also at line 2)`},
		{"twice", "[dial]\nallow = [\"KZ\", \"KZ\"]\n", `2: dial.allow[1]: "KZ" is listed twice`},
		{"per line zero", "[dial]\nper_line = 0\n", "2: dial.per_line: 0 is out of range 1..100"},
		{"negative total", "\n[dial]\nmax_concurrent_total = -1\n", "3: dial.max_concurrent_total: -1 is out of range"},
		{"huge minutes", "[dial]\nminutes_per_day = 1000000\n", "2: dial.minutes_per_day: 1000000 is out of range"},
		{"employee entry", goodBase + "[employee.dial]\ndeny = [\"+7-809\"]\n", "17: employee[0].dial.deny[0]"},
		{"employee limit", goodBase + "[employee.dial]\nmax_concurrent = -2\n", "17: employee[0].dial.max_concurrent: -2 is out of range"},
		{"group entry", goodBase + "[[group]]\nid = \"sales\"\nmembers = [\"ivanov\"]\n[group.dial]\nallow = [\"Kazakhstan\"]\n", "20: group[0].dial.allow[0]"},
		{"unknown key", "[dial]\nallow_countries = [\"KZ\"]\n", `2: unknown key "dial.allow_countries"`},
		{"wrong type", "[dial]\ncalls_per_day = \"ten\"\n", "2: dial.calls_per_day: wrong type: got a TOML string, want an integer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.toml", []byte(tc.doc))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			want := "bad.toml:" + tc.want
			for _, p := range ce.Problems {
				if strings.HasPrefix(p.String(), want) {
					if p.Hint == "" {
						t.Errorf("problem %q has no hint", p)
					}
					return
				}
			}
			t.Fatalf("want a problem starting %q, got:\n%v", want, err)
		})
	}
}

func TestParseDialEntry(t *testing.T) {
	for in, want := range map[string]DialEntry{"+": {Prefix: "+"}, "+7809": {Prefix: "+7809"}, "KZ": {Region: "KZ"}, "GB": {Region: "GB"}} {
		if got, err := ParseDialEntry(in); err != nil || got != want || got.String() != in {
			t.Errorf("%q -> %+v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "+7a", "kz", "KAZ", "ZZ", "++7", "7", "+ 7", "+1234567890123456"} {
		if _, err := ParseDialEntry(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzParseDialEntry: any list item is either refused or read back as written.
func FuzzParseDialEntry(f *testing.F) {
	for _, s := range []string{"+", "+7809", "KZ", "kz", "+7 809", "ZZ", "+12345678901234567", "\xff", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseDialEntry(s)
		if err != nil {
			return
		}
		if e.String() != s || (e.Prefix == "") == (e.Region == "") {
			t.Fatalf("%q read as %+v", s, e)
		}
	})
}
