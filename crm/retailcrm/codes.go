package retailcrm

// codes are what the integration module tells RetailCRM about callgate's
// users and lines.
type codes struct {
	users  map[string]int
	phones []string
}

// SetCodes replaces Config.Users and Config.ExternalPhones (a
// configuration reload); the next Register sends them.
func (c *Connector) SetCodes(users map[string]int, externalPhones []string) {
	c.reloaded.Store(&codes{users: users, phones: externalPhones})
}

// codes are the extensions and trunk numbers Register sends.
func (c *Connector) codes() (map[string]int, []string) {
	if r := c.reloaded.Load(); r != nil {
		return r.users, r.phones
	}
	return c.cfg.Users, c.cfg.ExternalPhones
}
