package megaplan

// SetPrograms replaces Config.Programs (a configuration reload): deals
// auto-created from operations queued from now on use the new schemes.
func (c *Connector) SetPrograms(programs map[string]int) { c.programs.Store(&programs) }

// program is the deal scheme for deals from an upstream account's calls.
func (c *Connector) program(account string) int {
	if p := c.programs.Load(); p != nil {
		return (*p)[account]
	}
	return c.cfg.Programs[account]
}
