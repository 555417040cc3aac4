package sipstack

import "callgate/sip/sipnet"

// SetPhones changes the networks phones may reach callgate from
// (sip.allow_networks, on a configuration reload); the next request is
// admitted by them.
func (s *Stack) SetPhones(n sipnet.Networks) { s.reloaded.Store(&n) }

// phoneNetworks are the networks in force: the last reload's, or those
// callgate started with.
func (s *Stack) phoneNetworks() sipnet.Networks {
	if n := s.reloaded.Load(); n != nil {
		return *n
	}
	return s.phones
}
