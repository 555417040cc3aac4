package routing

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"callgate/gateway/config"
	"callgate/sip/b2bua"

	"github.com/nyaruka/phonenumbers"
	"github.com/prometheus/client_golang/prometheus"
)

// Rule names say why a call to an outside number was refused: phones show
// "Dial Rule: <name>", the API answers it as the error's rule, and it labels
// callgate_dial_refused_total.
const (
	RulePremiumRate     = "premium-rate"
	RuleInternational   = "international"
	RuleNumberType      = "number-type"
	RuleInvalidNumber   = "invalid-number"
	RuleDenied          = "denied"
	RuleConcurrent      = "concurrent-calls"
	RuleTotalConcurrent = "total-concurrent-calls"
	RuleCallsPerDay     = "calls-per-day"
	RuleMinutesPerDay   = "minutes-per-day"
)

// RuleNames lists every rule, for metrics that show each from the start.
var RuleNames = []string{RulePremiumRate, RuleInternational, RuleNumberType, RuleInvalidNumber, RuleDenied,
	RuleConcurrent, RuleTotalConcurrent, RuleCallsPerDay, RuleMinutesPerDay}

// entry is an allow/deny list item with its specificity: a longer prefix
// beats a shorter one, and a country beats its bare calling code ("KZ" over
// "+7") but not a longer prefix ("+77" over "KZ").
type entry struct {
	config.DialEntry
	rank int
}

func entries(list []string) []entry {
	var out []entry
	for _, s := range list {
		e, err := config.ParseDialEntry(s)
		if err != nil {
			continue // the configuration was validated
		}
		rank := 2 * (len(e.Prefix) - 1)
		if e.Region != "" {
			rank = 2*len(strconv.Itoa(phonenumbers.GetCountryCodeForRegion(e.Region))) + 1
		}
		out = append(out, entry{e, rank})
	}
	return out
}

// best returns the most specific entry of list that matches n (rank -1: none).
func best(list []entry, n *Number) entry {
	m := entry{rank: -1}
	for _, e := range list {
		if e.rank <= m.rank {
			continue
		}
		if (e.Region != "" && e.Region == n.Region) || (e.Region == "" && strings.HasPrefix(n.E164, e.Prefix)) {
			m = e
		}
	}
	return m
}

// policy is one employee's resolved rules and limits (0: no limit).
type policy struct {
	allow, deny                               []entry
	maxConcurrent, callsPerDay, minutesPerDay int
}

// usage is one employee's outbound calls now and today.
type usage struct {
	active int
	day    int // the day calls and talked count, as year*1000+day of year
	calls  int
	talked time.Duration
}

// DialRules decides whether an employee may call an outside number now: the
// allow/deny lists and safe defaults (Check), then the limits (Admit).
type DialRules struct {
	// t is the rules in force; Reload swaps them, the usage stays.
	t   atomic.Pointer[rulesTable]
	now func() time.Time

	mu    sync.Mutex
	total int
	usage map[string]*usage
}

// rulesTable is the configuration's rules resolved for every employee. It
// never changes once built.
type rulesTable struct {
	region   string
	loc      *time.Location
	base     policy // for a caller the configuration does not name
	by       map[string]*policy
	maxTotal int
}

// NewDialRules resolves the configuration's dial rules for every employee:
// their own [employee.dial] over the first of their groups that sets a key,
// over [dial]. Days for the daily limits are the office's (console.time_zone).
func NewDialRules(cfg *config.Config) *DialRules {
	d := &DialRules{now: time.Now, usage: map[string]*usage{}}
	d.t.Store(newRulesTable(cfg))
	return d
}

// Reload puts a new configuration's rules and limits in force. The calls
// in progress keep their places: each employee's count of calls now and
// today goes on under the new limits.
func (d *DialRules) Reload(cfg *config.Config) { d.t.Store(newRulesTable(cfg)) }

func newRulesTable(cfg *config.Config) *rulesTable {
	loc := cfg.Console.TimeZone.Location()
	g := cfg.Dial
	d := &rulesTable{region: cfg.Calls.DefaultRegion, loc: loc, by: map[string]*policy{}, maxTotal: g.MaxConcurrentTotal}
	d.base = policy{allow: entries(g.Allow), deny: entries(g.Deny), maxConcurrent: g.PerLine, callsPerDay: g.CallsPerDay, minutesPerDay: g.MinutesPerDay}
	for _, e := range cfg.Employees {
		p := d.base
		p.maxConcurrent = g.PerLine * len(e.Extensions)
		layers := []*config.DialRules{e.Dial}
		for _, grp := range cfg.Groups {
			if slices.Contains(grp.Members, e.ID) {
				layers = append(layers, grp.Dial)
			}
		}
		for i := len(layers) - 1; i >= 0; i-- { // the most specific last
			l := layers[i]
			if l == nil {
				continue
			}
			if l.Allow != nil {
				p.allow = entries(l.Allow)
			}
			if l.Deny != nil {
				p.deny = entries(l.Deny)
			}
			for _, k := range []struct {
				from *int
				to   *int
			}{{l.MaxConcurrent, &p.maxConcurrent}, {l.CallsPerDay, &p.callsPerDay}, {l.MinutesPerDay, &p.minutesPerDay}} {
				if k.from != nil {
					*k.to = *k.from
				}
			}
		}
		d.by[e.ID] = &p
	}
	return d
}

func (d *rulesTable) policy(employee string) *policy {
	if p, ok := d.by[employee]; ok {
		return p
	}
	return &d.base
}

// safeType: the kinds of number the defaults let anyone call.
func safeType(t phonenumbers.PhoneNumberType) bool {
	switch t {
	case phonenumbers.FIXED_LINE, phonenumbers.MOBILE, phonenumbers.FIXED_LINE_OR_MOBILE, phonenumbers.TOLL_FREE:
		return true
	}
	return false
}

// Check applies the lists and the defaults to a number employee dials. It
// returns the refusing rule and what matched, or "" when the number may be
// dialled. Emergency numbers always may. A deny entry wins over an allow
// entry that is not more specific. An allow entry only widens where calls
// may go: numbers there must still be fixed, mobile or toll-free, unless the
// entry is a prefix longer than the country code (it names those numbers).
func (d *DialRules) Check(employee string, n *Number) (rule, detail string) {
	return d.t.Load().check(employee, n)
}

func (d *rulesTable) check(employee string, n *Number) (rule, detail string) {
	if n.Emergency {
		return "", ""
	}
	p := d.policy(employee)
	allow, deny := best(p.allow, n), best(p.deny, n)
	if deny.rank >= 0 && deny.rank >= allow.rank {
		return RuleDenied, deny.String()
	}
	if allow.rank >= 0 && allow.Prefix != "" && len(allow.Prefix)-1 > len(strconv.Itoa(n.CountryCode)) {
		return "", ""
	}
	if allow.rank < 0 && n.Region != d.region {
		return RuleInternational, n.Region
	}
	switch {
	case n.Type == phonenumbers.PREMIUM_RATE:
		return RulePremiumRate, ""
	case n.Type == phonenumbers.UNKNOWN:
		return RuleInvalidNumber, ""
	case !safeType(n.Type):
		return RuleNumberType, typeName(n.Type)
	}
	return "", ""
}

func typeName(t phonenumbers.PhoneNumberType) string {
	switch t {
	case phonenumbers.SHARED_COST:
		return "shared-cost"
	case phonenumbers.VOIP:
		return "voip"
	case phonenumbers.PERSONAL_NUMBER:
		return "personal-number"
	case phonenumbers.PAGER:
		return "pager"
	case phonenumbers.UAN:
		return "uan"
	case phonenumbers.VOICEMAIL:
		return "voicemail"
	}
	return strconv.Itoa(int(t))
}

// Admit checks a number employee dials and, when the rules allow it, takes
// a place for the call under the employee's and everyone's limits. The
// lease must end when the call does (nil for an emergency call, which no
// limit holds back). A refusal returns the rule and what was exceeded.
func (d *DialRules) Admit(employee string, n *Number) (l *Lease, rule, detail string) {
	t := d.t.Load()
	if rule, detail := t.check(employee, n); rule != "" || n.Emergency {
		return nil, rule, detail
	}
	p := t.policy(employee)
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	u := d.usage[employee]
	if u == nil {
		u = &usage{}
		d.usage[employee] = u
	}
	d.roll(u, now)
	switch {
	case p.maxConcurrent > 0 && u.active >= p.maxConcurrent:
		return nil, RuleConcurrent, strconv.Itoa(u.active) + " in progress"
	case t.maxTotal > 0 && d.total >= t.maxTotal:
		return nil, RuleTotalConcurrent, strconv.Itoa(d.total) + " in progress"
	case p.callsPerDay > 0 && u.calls >= p.callsPerDay:
		return nil, RuleCallsPerDay, strconv.Itoa(u.calls) + " today"
	case p.minutesPerDay > 0 && u.talked >= time.Duration(p.minutesPerDay)*time.Minute:
		return nil, RuleMinutesPerDay, u.talked.Truncate(time.Second).String() + " today"
	}
	u.active++
	u.calls++
	d.total++
	return &Lease{d: d, u: u}, "", ""
}

// roll starts a new day's counts for u when the day has changed. d.mu held.
func (d *DialRules) roll(u *usage, now time.Time) {
	t := now.In(d.t.Load().loc)
	if day := t.Year()*1000 + t.YearDay(); day != u.day {
		u.day, u.calls, u.talked = day, 0, 0
	}
}

// Lease is an admitted call's place under the limits (a b2bua.Lease): the
// B2BUA reports when the outside party answers and when the call ends.
type Lease struct {
	d        *DialRules
	u        *usage
	answered time.Time
	ended    bool
}

// Answered starts the talk time counted against minutes per day.
func (l *Lease) Answered() {
	now := l.d.now()
	l.d.mu.Lock()
	defer l.d.mu.Unlock()
	if l.answered.IsZero() && !l.ended {
		l.answered = now
	}
}

// End frees the call's place and counts its talk time (on the day it ends).
// Only the first call counts.
func (l *Lease) End() {
	now := l.d.now()
	l.d.mu.Lock()
	defer l.d.mu.Unlock()
	if l.ended {
		return
	}
	l.ended = true
	l.u.active--
	l.d.total--
	if !l.answered.IsZero() {
		l.d.roll(l.u, now)
		l.u.talked += now.Sub(l.answered)
	}
}

// Active is how many outbound calls employee has in progress.
func (d *DialRules) Active(employee string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if u := d.usage[employee]; u != nil {
		return u.active
	}
	return 0
}

func newDialRefused() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callgate_dial_refused_total",
		Help: "Calls and transfers to outside numbers the dial rules refused, by rule."}, []string{"rule"})
	for _, r := range RuleNames {
		c.WithLabelValues(r)
	}
	return c
}

// admit applies the dial rules to a call employee places (via: "call",
// "transfer", "click-to-call"): its lease, or a *b2bua.Refusal that is
// logged and counted.
func (r *Router) admit(employee string, n *Number, via string) (b2bua.Lease, error) {
	l, rule, detail := r.rules.Admit(employee, n)
	if rule == "" {
		if l == nil {
			return nil, nil // an emergency call: a nil *Lease would not be a nil b2bua.Lease
		}
		return l, nil
	}
	r.Log.Warn("dial rule refused a call", "employee", employee, "number", n.E164, "rule", rule, "detail", detail, "via", via)
	r.DialRefused.WithLabelValues(rule).Inc()
	return nil, &b2bua.Refusal{Status: 403, Reason: "Dial Rule: " + rule, Rule: rule}
}
