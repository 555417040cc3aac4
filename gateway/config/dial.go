package config

import (
	"fmt"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// Dial is the [dial] table: the rules every call to an outside number
// passes (calls from phones, transfers, click-to-call), and the limits every
// employee has unless their own [employee.dial] or a group's [group.dial]
// says otherwise. Without any of it, numbers of calls.default_region (fixed,
// mobile, toll-free) may be dialled and premium-rate and international ones
// may not; emergency numbers always may.
type Dial struct {
	// Allow widens what may be dialled: E.164 prefixes ("+7809505") or
	// country codes ("KZ").
	Allow []string `toml:"allow"`
	// Deny narrows it the same way.
	Deny []string `toml:"deny"`
	// PerLine is the default cap on an employee's concurrent outbound calls,
	// per extension they have.
	PerLine int `toml:"per_line"`
	// MaxConcurrentTotal caps the outbound calls of everyone together
	// (0: no cap).
	MaxConcurrentTotal int `toml:"max_concurrent_total"`
	// CallsPerDay and MinutesPerDay are each employee's default daily
	// limits on outbound calls and their talk time (0: no limit).
	CallsPerDay   int `toml:"calls_per_day"`
	MinutesPerDay int `toml:"minutes_per_day"`
}

// DialRules is an employee's or a group's own dial rules ([employee.dial],
// [group.dial]). A list or limit that is set replaces the one inherited:
// the employee's own over the first of their groups (in file order) that
// sets it, over [dial]. A group's limits apply to each member alone.
type DialRules struct {
	Allow []string `toml:"allow"`
	Deny  []string `toml:"deny"`
	// MaxConcurrent caps this employee's concurrent outbound calls (0: no
	// cap); unset: dial.per_line times their extensions.
	MaxConcurrent *int `toml:"max_concurrent"`
	CallsPerDay   *int `toml:"calls_per_day"`
	MinutesPerDay *int `toml:"minutes_per_day"`
}

// DialEntry is one item of an allow or deny list: an E.164 prefix or a
// country.
type DialEntry struct {
	// Prefix is "+" and 0 to 15 digits ("+" alone matches every number).
	Prefix string
	// Region is an ISO 3166 country code as phonenumbers knows it ("KZ").
	Region string
}

func (e DialEntry) String() string { return e.Prefix + e.Region }

// ParseDialEntry reads an allow/deny list item: "+7809", "+" or "KZ".
func ParseDialEntry(s string) (DialEntry, error) {
	if rest, ok := strings.CutPrefix(s, "+"); ok {
		if len(rest) > 15 {
			return DialEntry{}, fmt.Errorf("%q is longer than an E.164 number", s)
		}
		for _, r := range rest {
			if r < '0' || r > '9' {
				return DialEntry{}, fmt.Errorf("%q: an E.164 prefix is \"+\" and digits only", s)
			}
		}
		return DialEntry{Prefix: s}, nil
	}
	if len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' {
		if phonenumbers.GetCountryCodeForRegion(s) == 0 {
			return DialEntry{}, fmt.Errorf("%q is not a country phonenumbers knows", s)
		}
		return DialEntry{Region: s}, nil
	}
	return DialEntry{}, fmt.Errorf("%q is neither an E.164 prefix nor a country code", s)
}
