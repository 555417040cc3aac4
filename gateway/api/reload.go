package api

import (
	"bytes"
	"crypto/sha256"
	"strings"
)

// Replace puts new tokens in force (a configuration reload): the next
// request is checked against them, and a removed token no longer works.
func (t *Tokens) Replace(admin []string, scoped ...Token) {
	t.set.Store(newTokenSet(admin, scoped))
}

// Replace puts new console accounts in force (a configuration reload).
// Logins in progress stay for the accounts that remain, with their new
// name, role and extensions; a removed account's sessions end, and so do
// those of an account whose password changed.
func (s *Sessions) Replace(accounts []Account, names map[string]string, allVisible bool) {
	next := newPeople(accounts, names, allVisible, s.people.Load())
	s.mu.Lock()
	defer s.mu.Unlock()
	s.people.Store(next)
	for k, ss := range s.m {
		a := next.accounts[ss.acct.Employee]
		if a == nil || a.Employee != ss.acct.Employee || !bytes.Equal(a.Hash, ss.acct.Hash) {
			delete(s.m, k)
			continue
		}
		ss.acct = a
	}
}

// newTokenSet hashes admin tokens and scoped tokens.
func newTokenSet(admin []string, scoped []Token) *tokenSet {
	t := &tokenSet{}
	for _, p := range admin {
		t.hashes = append(t.hashes, sha256.Sum256([]byte(p)))
		t.who = append(t.who, Principal{Kind: "admin"})
	}
	for _, s := range scoped {
		kind, name, _ := strings.Cut(s.Scope, ":")
		t.hashes = append(t.hashes, sha256.Sum256([]byte(s.Token)))
		t.who = append(t.who, Principal{Kind: kind, Name: name})
	}
	return t
}
