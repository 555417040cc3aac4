package config

import (
	"fmt"
	"net/url"
	"time"
)

func (v *validator) console(c *Console) {
	switch c.Visibility {
	case "own", "all":
	default:
		v.bad("console.visibility", `"own" (employees see their own calls) or "all"`, "unknown value %q", c.Visibility)
	}
	v.between("console.session_ttl", c.SessionTTL.D(), time.Minute, 30*24*time.Hour)
	if err := c.TimeZone.err; err != nil {
		v.bad("console.time_zone", `an IANA zone, e.g. "Europe/Moscow"`, "%v", err)
	}
	if _, _, ok := c.hours(); c.BusinessHours != "" && !ok {
		v.bad("console.business_hours", `"HH:MM-HH:MM", e.g. "09:00-18:00"`, "%q is not a time range", c.BusinessHours)
	}
	for i, d := range c.BusinessDays {
		if _, ok := weekdays[d]; !ok {
			v.bad(fmt.Sprintf("console.business_days[%d]", i), `"mon", "tue", "wed", "thu", "fri", "sat" or "sun"`, "unknown day %q", d)
		}
	}
}

func (v *validator) crm(c *Config, employees map[string]bool) {
	for i := range c.Upstream.Accounts {
		a := &c.Upstream.Accounts[i]
		switch a.Autocreate {
		case "":
			a.Autocreate = "none"
		case "none", "contact", "contact+deal":
		default:
			v.bad(fmt.Sprintf("upstream.account[%d].autocreate", i), `"none", "contact" or "contact+deal"`, "unknown value %q", a.Autocreate)
		}
	}
	r := &c.CRM.RetailCRM
	users, mpUsers := map[int]string{}, map[int]string{}
	for i, e := range c.Employees {
		v.crmUser(fmt.Sprintf("employee[%d].retailcrm_user", i), "RetailCRM", "the user's id in RetailCRM (Settings → Users), e.g. 12", e.RetailCRMUser, e.ID, users)
		v.crmUser(fmt.Sprintf("employee[%d].megaplan_user", i), "Megaplan", "the Employee id in Megaplan, e.g. 1000005", e.MegaplanUser, e.ID, mpUsers)
	}
	v.megaplan(c, employees)
	v.mango(c)
	if !r.Enabled {
		return
	}
	if u, err := url.Parse(r.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		v.bad("crm.retailcrm.url", `the account address, e.g. "https://shop.retailcrm.ru"`, "%q is not an http(s) URL", r.URL)
	}
	r.APIKey = v.secret("crm.retailcrm.api_key", r.APIKey, r.APIKeyFile, "api_key_file")
	if !idRe.MatchString(r.ModuleCode) {
		v.bad("crm.retailcrm.module_code", `lower-case letters and digits, e.g. "callgate"`, "%q is not a valid module code", r.ModuleCode)
	}
	v.between("crm.retailcrm.retry_max", r.RetryMax.D(), time.Second, 24*time.Hour)
	if err := r.TimeZone.err; err != nil {
		v.bad("crm.retailcrm.time_zone", `an IANA zone, e.g. "Europe/Moscow"`, "%v", err)
	}
	for i, id := range r.Exclude {
		if !employees[id] {
			v.bad(fmt.Sprintf("crm.retailcrm.exclude[%d]", i), "name an [[employee]] id", "unknown employee %q", id)
		}
	}
	if c.HTTP.PublicURL == "" {
		v.bad("http.public_url", "RetailCRM calls makeCallUrl and fetches recordings there, e.g. \"https://callgate.example.ru\"", "is required when crm.retailcrm is enabled")
	}
}

// crmUser checks an employee's user id in one CRM: positive, and one
// employee per CRM user.
func (v *validator) crmUser(path, crmName, hint string, id int, employee string, seen map[int]string) {
	if id < 0 {
		v.bad(path, hint, "must be positive")
	}
	if id > 0 {
		if first, dup := seen[id]; dup {
			v.bad(path, "each "+crmName+" user belongs to one employee", "%s user %d is also mapped to %s", crmName, id, first)
		}
		seen[id] = employee
	}
}

func (v *validator) megaplan(c *Config, employees map[string]bool) {
	m := &c.CRM.Megaplan
	for i, a := range c.Upstream.Accounts {
		if a.Program < 0 {
			v.bad(fmt.Sprintf("upstream.account[%d].program", i), "the deal scheme id in Megaplan, e.g. 12", "must be positive")
		}
		if m.Enabled && a.Autocreate == "contact+deal" && a.Program == 0 {
			v.bad(fmt.Sprintf("upstream.account[%d].program", i), "the deal scheme id in Megaplan, e.g. 12", "is required for autocreate = \"contact+deal\" when crm.megaplan is enabled")
		}
	}
	if !m.Enabled {
		return
	}
	if u, err := url.Parse(m.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		v.bad("crm.megaplan.url", `the account address, e.g. "https://office.megaplan.ru"`, "%q is not an http(s) URL", m.URL)
	}
	if m.Username == "" {
		v.bad("crm.megaplan.username", "the login of the Megaplan user callgate acts as", "missing username")
	}
	m.Password = v.secret("crm.megaplan.password", m.Password, m.PasswordFile, "password_file")
	if m.RPS <= 0 || m.RPS > 100 {
		v.bad("crm.megaplan.rps", "requests a second, e.g. 3", "must be above 0 and at most 100")
	}
	v.between("crm.megaplan.poll", m.Poll.D(), time.Second, 24*time.Hour)
	v.between("crm.megaplan.retry_max", m.RetryMax.D(), time.Second, 24*time.Hour)
	for i, id := range m.Exclude {
		if !employees[id] {
			v.bad(fmt.Sprintf("crm.megaplan.exclude[%d]", i), "name an [[employee]] id", "unknown employee %q", id)
		}
	}
}

func (v *validator) mango(c *Config) {
	m := &c.Mango
	dynamic := false
	for i, a := range c.Upstream.Accounts {
		switch a.Tracking {
		case "", "static":
		case "dynamic":
			dynamic = true
		default:
			v.bad(fmt.Sprintf("upstream.account[%d].tracking", i), `"static" or "dynamic"`, "unknown value %q", a.Tracking)
		}
	}
	if !dynamic && m.APIKey == "" && m.APIKeyFile == "" {
		return
	}
	if u, err := url.Parse(m.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		v.bad("mango.url", `Mango's API address, "https://app.mango-office.ru/vpbx/"`, "%q is not an http(s) URL", m.URL)
	}
	m.APIKey = v.secret("mango.api_key", m.APIKey, m.APIKeyFile, "api_key_file")
	m.APISalt = v.secret("mango.api_salt", m.APISalt, m.APISaltFile, "api_salt_file")
	v.between("mango.budget", m.Budget.D(), 10*time.Millisecond, 10*time.Second)
}
