package config

import "fmt"

const dialEntryHint = `an E.164 prefix such as "+7809" ("+" alone is every number) or an upper-case country code such as "KZ"`

// maxDialLimit bounds every dial limit: larger is a typo, not a policy.
const maxDialLimit = 100000

func (v *validator) dial(c *Config) {
	d := &c.Dial
	v.dialLists("dial", d.Allow, d.Deny)
	if d.PerLine < 1 || d.PerLine > 100 {
		v.bad("dial.per_line", "e.g. 2: a line may hold one call and place another", "%d is out of range 1..100", d.PerLine)
	}
	v.dialLimit("dial.max_concurrent_total", d.MaxConcurrentTotal)
	v.dialLimit("dial.calls_per_day", d.CallsPerDay)
	v.dialLimit("dial.minutes_per_day", d.MinutesPerDay)
	for i := range c.Employees {
		v.dialRules(fmt.Sprintf("employee[%d].dial", i), c.Employees[i].Dial)
	}
	for i := range c.Groups {
		v.dialRules(fmt.Sprintf("group[%d].dial", i), c.Groups[i].Dial)
	}
}

func (v *validator) dialRules(path string, r *DialRules) {
	if r == nil {
		return
	}
	v.dialLists(path, r.Allow, r.Deny)
	for _, l := range []struct {
		key string
		n   *int
	}{{"max_concurrent", r.MaxConcurrent}, {"calls_per_day", r.CallsPerDay}, {"minutes_per_day", r.MinutesPerDay}} {
		if l.n != nil {
			v.dialLimit(path+"."+l.key, *l.n)
		}
	}
}

func (v *validator) dialLimit(path string, n int) {
	if n < 0 || n > maxDialLimit {
		v.bad(path, fmt.Sprintf("0 (no limit) to %d", maxDialLimit), "%d is out of range", n)
	}
}

// dialLists checks an allow and a deny list of one level: every entry
// readable, none twice, none both allowed and denied.
func (v *validator) dialLists(path string, allow, deny []string) {
	type use struct{ key, path string }
	seen := map[string]use{}
	for _, l := range []struct {
		key  string
		list []string
	}{{"allow", allow}, {"deny", deny}} {
		for i, s := range l.list {
			p := fmt.Sprintf("%s.%s[%d]", path, l.key, i)
			if _, err := ParseDialEntry(s); err != nil {
				v.bad(p, dialEntryHint, "%v", err)
				continue
			}
			switch first, dup := seen[s]; {
			case dup && first.key != l.key:
				v.bad(p, "keep it in one of allow and deny", "%q is both allowed and denied (also at line %d)", s, v.idx.line(first.path))
			case dup:
				v.bad(p, "remove the duplicate", "%q is listed twice", s)
			}
			seen[s] = use{l.key, p}
		}
	}
}
