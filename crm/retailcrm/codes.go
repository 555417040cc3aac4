package retailcrm

// codes are what the integration module tells RetailCRM about callgate's
// users and lines.
type codes struct {
	users  map[string]int
	phones []string
	sites  map[string]string
}

// SetCodes replaces Config.Users, Config.ExternalPhones and Config.Sites
// (a configuration reload); the next Register sends them, and the next
// call uses its trunk's store.
func (c *Connector) SetCodes(users map[string]int, externalPhones []string, sites map[string]string) {
	c.reloaded.Store(&codes{users: users, phones: externalPhones, sites: sites})
}

// site is the store (site code) of a call on trunk number n: the trunk's
// own, or Config.Site.
func (c *Connector) site(n string) string {
	sites := c.cfg.Sites
	if r := c.reloaded.Load(); r != nil {
		sites = r.sites
	}
	if s := sites[n]; s != "" {
		return s
	}
	return c.cfg.Site
}

// codes are the extensions and trunk numbers Register sends.
func (c *Connector) codes() (map[string]int, []string) {
	if r := c.reloaded.Load(); r != nil {
		return r.users, r.phones
	}
	return c.cfg.Users, c.cfg.ExternalPhones
}
