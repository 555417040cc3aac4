package sipws

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestOwnOrigin(t *testing.T) {
	plain := func(*http.Request) bool { return false }
	tls := func(*http.Request) bool { return true }
	cases := []struct {
		https  func(*http.Request) bool
		public string
		host   string
		origin string
		ok     bool
	}{
		// Plain http by name: the name could be a foreign page's, rebound
		// to callgate's address (DNS rebinding).
		{plain, "", "pbx.office:8080", "http://pbx.office:8080", false},
		{plain, "", "evil.example:8080", "http://evil.example:8080", false},
		{plain, "http://pbx.office:8080", "pbx.office:8080", "http://pbx.office:8080", true}, // named by the admin
		{plain, "", "192.0.2.10:8080", "http://192.0.2.10:8080", true},
		{plain, "", "192.0.2.10:8080", "HTTP://192.0.2.10:8080", true},
		{plain, "", "localhost:8080", "http://localhost:8080", true},
		{tls, "", "pbx.office:8443", "https://pbx.office:8443", true},    // the certificate vouches for the name
		{plain, "", "192.0.2.10:8080", "https://192.0.2.10:8080", false}, // another scheme
		{plain, "", "192.0.2.10:8080", "http://192.0.2.10:8081", false},  // another port
		{plain, "", "pbx.office:8080", "http://evil.example", false},
		{tls, "", "pbx.office", "https://pbx.office:443", true},
		{tls, "", "pbx.office:443", "https://pbx.office", true},
		{plain, "", "[::1]:8080", "http://[::1]:8080", true},
		{plain, "https://calls.example.org", "127.0.0.1:8080", "https://calls.example.org", true}, // behind the tunnel
		{plain, "https://calls.example.org/", "127.0.0.1:8080", "https://calls.example.org.evil.example", false},
		{plain, "", "pbx.office", "null", false}, // sandboxed frames and files
		{plain, "", "pbx.office", "http://pbx.office/path", false},
		{plain, "", "pbx.office", "http://user@pbx.office", false},
		{plain, "", "pbx.office", "ws://pbx.office", false},
		{plain, "", "", "http://", false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/sip", nil)
		r.Host = c.host
		if got := OwnOrigin(c.https, c.public)(r, c.origin); got != c.ok {
			t.Errorf("host %q public %q origin %q: %v, want %v", c.host, c.public, c.origin, got, c.ok)
		}
	}
}

// FuzzOrigin feeds Origin headers and Host values from the network to the
// check: it never panics, and an origin it accepts is the request's own.
func FuzzOrigin(f *testing.F) {
	for _, s := range []string{"http://pbx.office:8080", "https://[::1]", "null", "http://a@b", "http://%zz", "https://x:99999", ""} {
		f.Add(s, "pbx.office:8080")
	}
	f.Fuzz(func(t *testing.T, origin, host string) {
		r := httptest.NewRequest("GET", "/sip", nil)
		r.Host = host
		if OwnOrigin(func(*http.Request) bool { return false }, "")(r, origin) {
			a, err := parseOrigin(origin)
			b, err2 := parseOrigin("http://" + host)
			if err != nil || err2 != nil || a != b {
				t.Fatalf("accepted %q for host %q", origin, host)
			}
		}
	})
}
