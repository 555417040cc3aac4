package digest

import (
	"testing"
	"time"
)

// An unknown user's answer takes the same path as a known user's wrong
// one: it is checked (against a random secret), gets the same results for
// the same faults, and never passes, not even when it matches that secret.
func TestUnknownUserTakesTheKnownUsersPath(t *testing.T) {
	s := NewServer("callgate", []Algorithm{MD5}, time.Minute)
	ch := s.Challenges(false)
	for _, tc := range []struct {
		name string
		edit func(string) string
	}{
		{"wrong response", func(a string) string { return a }},
		{"bad qop", func(a string) string { return a + `, qop=auth-int` }},
	} {
		known := tc.edit(answer(t, ch, MD5, "101", "guess", 1))
		unknown := tc.edit(answer(t, ch, MD5, "555", "guess", 1))
		_, rk := s.Verify("REGISTER", known, 1, users)
		_, ru := s.Verify("REGISTER", unknown, 2, users)
		if rk != ru {
			t.Errorf("%s: known user %s, unknown user %s", tc.name, rk, ru)
		}
	}
	s.dummy[MD5] = HA1(MD5, "555", "callgate", "dummy")
	if _, r := s.Verify("REGISTER", answer(t, ch, MD5, "555", "dummy", 3), 3, users); r != Failed {
		t.Fatalf("an answer matching the dummy secret: %s", r)
	}
}

// The two benchmarks show an unknown user costs what a wrong password of a
// known one does (no timing oracle for which extensions exist).
func BenchmarkVerifyWrongPassword(b *testing.B) { benchVerify(b, "101") }

func BenchmarkVerifyUnknownUser(b *testing.B) { benchVerify(b, "555") }

func benchVerify(b *testing.B, user string) {
	s := NewServer("callgate", []Algorithm{MD5}, time.Minute)
	a := answer(b, s.Challenges(false), MD5, user, "guess", 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, r := s.Verify("REGISTER", a, uint64(i), users); r != Failed {
			b.Fatal(r)
		}
	}
}
