package callmodel

import (
	"callgate/gateway/config"
	"callgate/gateway/routing"
)

// SetAccounts takes the upstream accounts of a reloaded configuration:
// calls that arrive from now on get their trunk number, advertising
// source and call tracking from them. Open calls keep what they got.
func (m *Model) SetAccounts(accounts []config.Account) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setAccounts(accounts)
}

// setAccounts fills the per-account maps; m.mu held (or m not shared yet).
func (m *Model) setAccounts(accounts []config.Account) {
	m.numbers, m.sources, m.dynamic = map[string]string{}, map[string]string{}, map[string]bool{}
	for _, a := range accounts {
		m.numbers[a.User] = a.Number
		if n, err := routing.Normalize(a.Number, m.region); err == nil {
			m.numbers[a.User] = n
		}
		m.sources[a.User] = a.Source
		m.dynamic[a.User] = a.Tracking == "dynamic"
	}
}
