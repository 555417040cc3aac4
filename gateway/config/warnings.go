package config

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// placeholders are the example secrets written in configs/callgate.toml
// (TestPlaceholdersMatchReference keeps the list in step with the file).
// Left in a real configuration, anyone who has read the file knows them.
var placeholders = map[string]bool{
	"Secret123":                        true,
	"Phone101pass":                     true,
	"Phone103pass":                     true,
	"Desk110pass":                      true,
	"change-me-to-a-long-random-token": true,
	// password_hash of the example admin: the hash of "change-me-now".
	"$2a$12$ir76tq6bEg4FLseTzWRO6e51P4ptkz3NzAivvjezvZFCI7ZLdngKi": true,
}

// isPlaceholder reports whether a secret is one of the examples, or says
// it should be changed.
func isPlaceholder(s string) bool {
	l := strings.ToLower(s)
	return placeholders[s] || strings.Contains(l, "change-me") || strings.Contains(l, "changeme")
}

// warnings finds what a valid configuration allows but an office should
// not run with: example secrets, a console nobody can log in to, and a
// console office PCs cannot reach. They never name a secret's value, so
// the daemon can log them.
func (v *validator) warnings(c *Config) []Problem {
	v.problems = nil
	v.placeholders(c)
	v.consoleLogin(c)
	v.consoleReach(c)
	for i := range v.problems {
		v.problems[i].Warning = true
	}
	sort.SliceStable(v.problems, func(i, j int) bool { return v.problems[i].Line < v.problems[j].Line })
	return v.problems
}

func (v *validator) placeholders(c *Config) {
	const example = "is the example value from configs/callgate.toml"
	check := func(path, secret, hint string) {
		if secret != "" && isPlaceholder(secret) {
			v.bad(path, hint, example)
		}
	}
	const phone = "give every phone its own password of 12 or more characters, e.g. from `openssl rand -base64 12`"
	for i, a := range c.Upstream.Accounts {
		check(fmt.Sprintf("upstream.account[%d].password", i), a.Password, "write the SIP password of this account from the VPBX's settings")
	}
	for i, e := range c.Employees {
		p := fmt.Sprintf("employee[%d]", i)
		check(p+".sip_password", e.SIPPassword, phone)
		check(p+".password_hash", e.PasswordHash, "set this employee's own console password: callgate hash-password")
	}
	for i, d := range c.Desks {
		check(fmt.Sprintf("desk[%d].sip_password", i), d.SIPPassword, phone)
	}
	const token = "make a token with `openssl rand -hex 20`"
	for i, t := range c.HTTP.APITokens {
		check(fmt.Sprintf("http.api_tokens[%d]", i), t, token)
	}
	for i, t := range c.HTTP.Tokens {
		check(fmt.Sprintf("http.token[%d].token", i), t.Token, token)
	}
	check("crm.retailcrm.api_key", c.CRM.RetailCRM.APIKey, "the API key from RetailCRM's settings")
	check("crm.megaplan.password", c.CRM.Megaplan.Password, "the password of the Megaplan API user")
	check("mango.api_key", c.Mango.APIKey, "the VPBX's unique code from Mango's API connector")
	check("mango.api_salt", c.Mango.APISalt, "the signing key from Mango's API connector")
}

// consoleLogin warns when nobody, or no admin, can log in to the console.
func (v *validator) consoleLogin(c *Config) {
	if c.HTTP.Listen == "" {
		return // no console
	}
	anyone, admin := false, false
	for _, e := range c.Employees {
		if e.PasswordHash != "" {
			anyone = true
			admin = admin || e.Role == "admin"
		}
	}
	at := "employee"
	if len(c.Employees) > 0 {
		at = "employee[0]"
	}
	switch {
	case !anyone:
		v.bad(at, `set password_hash (the output of callgate hash-password) and role = "admin" for whoever runs callgate`,
			"no employee has a console password (password_hash): nobody can log in to the console")
	case !admin:
		v.bad(at, `give whoever runs callgate role = "admin" and a password_hash (callgate hash-password)`,
			"no employee with role = \"admin\" has a console password: nobody can open the admin page")
	}
}

// consoleReach warns when phones may register from the LAN but the
// console listens on loopback only, where office PCs cannot open it.
func (v *validator) consoleReach(c *Config) {
	ap, err := netip.ParseAddrPort(c.HTTP.Listen)
	if err != nil || !ap.Addr().IsLoopback() {
		return
	}
	lanListen := false
	for _, l := range c.SIP.Listen {
		lanListen = lanListen || !l.Addr.Addr().IsLoopback()
	}
	lanPhones := false
	for _, n := range c.SIP.AllowNetworks {
		lanPhones = lanPhones || !n.Prefix.Addr().IsLoopback()
	}
	if lanListen && lanPhones {
		v.bad("http.listen", `listen on the office LAN address, e.g. listen = "192.168.1.10:8080" (or "0.0.0.0:8080"), or put a reverse proxy on the LAN in front of it`,
			"the console listens on loopback only (%s) while phones may register from the LAN: office PCs cannot open it", ap)
	}
}
