package digest

import (
	"testing"
	"time"
)

// withPasses is a Secrets with short-lived passwords beside each user's own.
type withPasses struct {
	secrets
	passes map[string][]string
}

func (w withPasses) AlternateHA1s(user string, alg Algorithm) []string {
	var out []string
	for _, p := range w.passes[user] {
		out = append(out, HA1(alg, user, "callgate", p))
	}
	return out
}

func TestAlternateSecretsAuthenticate(t *testing.T) {
	s := NewServer("callgate", []Algorithm{MD5}, time.Minute)
	sec := withPasses{secrets: users, passes: map[string][]string{"101": {"pass-a", "pass-b"}, "999": {"orphan"}}}
	cases := []struct {
		user, pass string
		want       Result
	}{
		{"101", "Phone101pass", OK}, // the SIP password still works
		{"101", "pass-b", OK},       // so does a short-lived one
		{"101", "pass-c", Failed},   // but nothing else
		{"102", "pass-a", Failed},   // nor another user's pass
		{"999", "orphan", OK},       // a pass for a user with no SIP password of its own
	}
	for i, c := range cases {
		auth := answer(t, s.Challenges(false), MD5, c.user, c.pass, 1)
		if _, r := s.Verify("REGISTER", auth, uint64(i), sec); r != c.want {
			t.Errorf("%s with %q: %s, want %s", c.user, c.pass, r, c.want)
		}
	}
}
