package gateway

import "callgate/gateway/reload"

// Reload reads the configuration file again and applies what may change
// while callgate runs, keeping every call and valid registration (see
// gateway/reload); a file with problems changes nothing. Not while
// stopping.
func (g *Gateway) Reload(path string) error {
	if g.b2b.Draining() {
		g.log.Warn("configuration reload ignored: callgate is stopping")
		return nil
	}
	return g.reload.Load(path)
}

// reloadParts are the holders of configuration a reload reaches.
func (g *Gateway) reloadParts() reload.Parts {
	p := reload.Parts{Directory: g.dir, Bindings: g.reg.Location(), Registrar: g.reg, Phones: g.sip, Router: g.router,
		Calls: g.b2b, Model: g.calls, CRM: g.crm, Recordings: g.recs}
	if g.trunk != nil { // a nil *trunk.Trunk would be a non-nil Trunk
		p.Trunk = g.trunk
	}
	if g.tokens != nil {
		p.Tokens, p.Sessions = g.tokens, g.sessions
	}
	return p
}
