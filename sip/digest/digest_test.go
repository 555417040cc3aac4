package digest

import (
	"strings"
	"testing"
	"time"

	icdigest "github.com/icholy/digest"
)

type secrets map[string]string // user -> password

func (s secrets) HA1(user string, alg Algorithm) (string, bool) {
	p, ok := s[user]
	if !ok {
		return "", false
	}
	return HA1(alg, user, "callgate", p), true
}

var users = secrets{"101": "Phone101pass"}

// answer plays a phone: it picks the challenge with alg and answers it.
func answer(t testing.TB, challenges []string, alg Algorithm, user, pass string, nc int) string {
	t.Helper()
	for _, c := range challenges {
		ch, err := icdigest.ParseChallenge(c)
		if err != nil {
			t.Fatalf("client cannot parse our challenge %q: %v", c, err)
		}
		if ch.Algorithm != string(alg) {
			continue
		}
		cred, err := icdigest.Digest(ch, icdigest.Options{Method: "REGISTER", URI: "sip:127.0.0.1", Username: user, Password: pass, Count: nc})
		if err != nil {
			t.Fatal(err)
		}
		return cred.String()
	}
	t.Fatalf("no %s challenge in %v", alg, challenges)
	return ""
}

func TestVerifyBothAlgorithms(t *testing.T) {
	s := NewServer("callgate", []Algorithm{SHA256, MD5}, time.Minute)
	ch := s.Challenges(false)
	if len(ch) != 2 || !strings.Contains(ch[0], "algorithm=SHA-256") || !strings.Contains(ch[1], "algorithm=MD5") || !strings.Contains(ch[0], `qop="auth"`) {
		t.Fatalf("challenges = %v", ch)
	}
	for _, alg := range []Algorithm{MD5, SHA256} {
		auth := answer(t, s.Challenges(false), alg, "101", "Phone101pass", 1)
		if u, r := s.Verify("REGISTER", auth, 1, users); r != OK || u != "101" {
			t.Fatalf("%s: got %s %s", alg, u, r)
		}
	}
}

func TestVerifyFailures(t *testing.T) {
	s := NewServer("callgate", []Algorithm{MD5}, time.Minute)
	ch := s.Challenges(false)
	if _, r := s.Verify("REGISTER", answer(t, ch, MD5, "101", "wrong", 1), 1, users); r != Failed {
		t.Fatalf("wrong password: %s", r)
	}
	if _, r := s.Verify("REGISTER", answer(t, ch, MD5, "999", "Phone101pass", 1), 1, users); r != Failed {
		t.Fatalf("unknown user: %s", r)
	}
	if _, r := s.Verify("REGISTER", "", 1, users); r != NoCredentials {
		t.Fatalf("no header: %s", r)
	}
	other := strings.Replace(answer(t, ch, MD5, "101", "Phone101pass", 1), `realm="callgate"`, `realm="elsewhere"`, 1)
	if _, r := s.Verify("REGISTER", other, 1, users); r != NoCredentials {
		t.Fatalf("other realm: %s", r)
	}
	for _, bad := range []string{"Basic abc", "Digest username=", `Digest username="101", realm="callgate", nonce="x", qop=auth, nc=zz`} {
		if _, r := s.Verify("REGISTER", bad, 1, users); r == OK || r == Failed {
			t.Fatalf("%q: %s", bad, r)
		}
	}
	// The wrong method gives another response.
	if _, r := s.Verify("INVITE", answer(t, ch, MD5, "101", "Phone101pass", 2), 1, users); r != Failed {
		t.Fatalf("method mismatch: %s", r)
	}
	// SHA-256 is not accepted when not offered.
	if _, r := s.Verify("REGISTER", strings.Replace(answer(t, ch, MD5, "101", "Phone101pass", 3), "algorithm=MD5", "algorithm=SHA-256", 1), 1, users); r != NoCredentials {
		t.Fatalf("unoffered algorithm: %s", r)
	}
}

func TestNonceLifetimeAndForeignNonces(t *testing.T) {
	s := NewServer("callgate", []Algorithm{MD5}, time.Minute)
	now := time.Now()
	s.now = func() time.Time { return now }
	ch := s.Challenges(false)
	auth := answer(t, ch, MD5, "101", "Phone101pass", 1)
	now = now.Add(61 * time.Second)
	if _, r := s.Verify("REGISTER", auth, 1, users); r != Stale {
		t.Fatalf("expired nonce: %s", r)
	}
	if got := s.Challenges(true)[0]; !strings.Contains(got, "stale=true") {
		t.Fatalf("stale challenge %q", got)
	}
	// A nonce signed by another process (e.g. before a restart) is stale, not a failure.
	other := NewServer("callgate", []Algorithm{MD5}, time.Minute)
	if _, r := s.Verify("REGISTER", answer(t, other.Challenges(false), MD5, "101", "wrong", 1), 1, users); r != Stale {
		t.Fatalf("foreign nonce: %s", r)
	}
}

func TestNonceCountReplay(t *testing.T) {
	s := NewServer("callgate", []Algorithm{MD5}, time.Minute)
	ch := s.Challenges(false)
	a1 := answer(t, ch, MD5, "101", "Phone101pass", 1)
	if _, r := s.Verify("REGISTER", a1, 42, users); r != OK {
		t.Fatal(r)
	}
	if _, r := s.Verify("REGISTER", a1, 42, users); r != OK {
		t.Fatalf("retransmission of the same request: %s", r)
	}
	if _, r := s.Verify("REGISTER", a1, 43, users); r != Stale {
		t.Fatalf("replay in another request: %s", r)
	}
	if _, r := s.Verify("REGISTER", answer(t, ch, MD5, "101", "Phone101pass", 2), 44, users); r != OK {
		t.Fatalf("next count: %s", r)
	}
}

func FuzzVerify(f *testing.F) {
	s := NewServer("callgate", []Algorithm{MD5, SHA256}, time.Minute)
	f.Add(`Digest username="101", realm="callgate", nonce="abc", uri="sip:x", response="00", qop=auth, nc=00000001, cnonce="x"`)
	f.Add("Digest ")
	f.Fuzz(func(t *testing.T, h string) {
		if _, r := s.Verify("REGISTER", h, 0, users); r == OK {
			t.Fatalf("random header authenticated: %q", h)
		}
	})
}

func BenchmarkChallengeAndVerify(b *testing.B) {
	s := NewServer("callgate", []Algorithm{MD5}, time.Minute)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ch, _ := icdigest.ParseChallenge(s.Challenges(false)[0])
		cred, _ := icdigest.Digest(ch, icdigest.Options{Method: "REGISTER", URI: "sip:127.0.0.1", Username: "101", Password: "Phone101pass", Count: 1})
		if _, r := s.Verify("REGISTER", cred.String(), uint64(i), users); r != OK {
			b.Fatal(r)
		}
	}
}

func TestParseCredentialsAgreesWithClientLibrary(t *testing.T) {
	s := NewServer("callgate", []Algorithm{MD5}, time.Minute)
	auth := answer(t, s.Challenges(false), MD5, "101", "Phone101pass", 7)
	want, err := icdigest.ParseCredentials(auth)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := parseCredentials(auth)
	if !ok || got.username != want.Username || got.realm != want.Realm || got.nonce != want.Nonce || got.uri != want.URI ||
		got.response != want.Response || got.cnonce != want.Cnonce || got.qop != want.QOP || got.nc != want.Nc || got.algorithm != want.Algorithm {
		t.Fatalf("parsed %+v, library says %+v", got, want)
	}
	for _, bad := range []string{"", "Digest", "Basic x=y", `Digest username="unterminated`, "Digest =x", "Digest nc=zz"} {
		if _, ok := parseCredentials(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzParseCredentials(f *testing.F) {
	f.Add(`Digest username="101", realm="callgate", nonce="abc", uri="sip:x", response="00", qop=auth, nc=00000001, cnonce="x"`)
	f.Fuzz(func(t *testing.T, h string) {
		c, ok := parseCredentials(h)
		if ok && len(c.username) > len(h) {
			t.Fatal("impossible")
		}
	})
}
