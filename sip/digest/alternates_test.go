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

// AlternateHA1s tags each pass with its own text, so a test can see which
// matched.
func (w withPasses) AlternateHA1s(user string, alg Algorithm) []Alternate {
	var out []Alternate
	for _, p := range w.passes[user] {
		out = append(out, Alternate{HA1: HA1(alg, user, "callgate", p), Tag: "tag-" + p})
	}
	return out
}

func TestAlternateSecretsAuthenticate(t *testing.T) {
	s := NewServer("callgate", []Algorithm{MD5}, time.Minute)
	sec := withPasses{secrets: users, passes: map[string][]string{"101": {"pass-a", "pass-b"}, "999": {"orphan"}}}
	cases := []struct {
		user, pass string
		want       Result
		tag        string
	}{
		{"101", "Phone101pass", OK, ""},     // the SIP password still works, untagged
		{"101", "pass-b", OK, "tag-pass-b"}, // so does a short-lived one, named by its tag
		{"101", "pass-c", Failed, ""},       // but nothing else
		{"102", "pass-a", Failed, ""},       // nor another user's pass
		{"999", "orphan", OK, "tag-orphan"}, // a pass for a user with no SIP password of its own
	}
	for i, c := range cases {
		auth := answer(t, s.Challenges(false), MD5, c.user, c.pass, 1)
		if _, r, tag := s.VerifyTag("REGISTER", auth, uint64(i), sec); r != c.want || tag != c.tag {
			t.Errorf("%s with %q: %s tagged %q, want %s tagged %q", c.user, c.pass, r, tag, c.want, c.tag)
		}
	}
}
