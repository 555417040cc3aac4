package resolve

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseHosts(t *testing.T) {
	got := parseHosts([]byte(`# comment
127.0.0.1	localhost
::1 localhost ip6-localhost   # trailing comment
10.0.0.5 VPBX.Office. vpbx
10.0.0.6 vpbx
fe80::1%eth0 linklocal
not-an-ip foo
10.0.0.7
::ffff:10.0.0.8 mapped
10.0.0.5 vpbx
`))
	want := map[string][]string{
		"localhost":     {"127.0.0.1", "::1"},
		"ip6-localhost": {"::1"},
		"vpbx.office":   {"10.0.0.5"},
		"vpbx":          {"10.0.0.5", "10.0.0.6"},
		"mapped":        {"10.0.0.8"},
	}
	if long := parseHosts([]byte("1.2.3.4 " + strings.Repeat("x", 70000) + "\n5.6.7.8 after.long.line\n")); len(long["after.long.line"]) != 1 {
		t.Fatalf("a long line hides the next: %v", long)
	}
	if len(got) != len(want) {
		t.Fatalf("names %v", got)
	}
	for name, addrs := range want {
		var w []netip.Addr
		for _, a := range addrs {
			w = append(w, netip.MustParseAddr(a))
		}
		if !slices.Equal(got[name], w) {
			t.Errorf("%s: %v, want %v", name, got[name], w)
		}
	}
}

// FuzzParseHosts: any file parses without panic into valid, unzoned
// addresses under canonical names.
func FuzzParseHosts(f *testing.F) {
	f.Add("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
	f.Add("# only a comment\n\n\t\n")
	f.Add("10.0.0.5 VPBX.Office. vpbx # x\nfe80::1%eth0 ll\n::ffff:1.2.3.4 m\n")
	f.Add("1.2.3.4\n" + strings.Repeat("x", 70000) + "\n5.6.7.8 after.long.line\n")
	f.Add("1.2.3.4 00000.. a..b ok.\n") // empty labels: no host names
	f.Fuzz(func(t *testing.T, s string) {
		for name, addrs := range parseHosts([]byte(s)) {
			if name == "" || name != canonical(name) || strings.ContainsAny(name, " \t\n#") {
				t.Fatalf("name %q", name)
			}
			for _, a := range addrs {
				if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
					t.Fatalf("%s: address %v", name, a)
				}
			}
		}
	})
}
