package config

import (
	"errors"
	"strings"
	"testing"
)

// parseProblems parses doc and returns its problems, failing the test when
// it is accepted.
func parseProblems(t *testing.T, doc string) []Problem {
	t.Helper()
	_, err := Parse("bad.toml", []byte(doc))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want a *config.Error, got %v for:\n%s", err, doc)
	}
	return ce.Problems
}

func TestDecodeMessages(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want string // the whole problem after "bad.toml:"
	}{
		{"duration integer", "[sip]\nmin_expires = 60\n",
			`2: sip.min_expires: 60 is not a duration: a TOML integer has no unit (hint: use "60s")`},
		{"duration float", "[sip]\n\nnonce_lifetime = 1.5\n",
			`3: sip.nonce_lifetime: 1.5 is not a duration: a TOML float has no unit (hint: use "1.5s")`},
		{"duration number string", "[upstream]\nexpires = \"300\"\n",
			`2: upstream.expires: "300" is not a duration: the number has no unit (hint: use "300s")`},
		{"duration words", "[calls]\nring_timeout = \"half a minute\"\n",
			`2: calls.ring_timeout: "half a minute" is not a duration (hint: durations are quoted strings with a unit: "300ms", "30s", "5m", "8760h")`},
		{"duration boolean", "[media]\ntimeout = true\n",
			`2: media.timeout: wrong type: got a TOML boolean, want a duration such as "30s" (hint: strings need quotes, numbers and true/false do not, lists use [ ])`},
		{"duration in a group", goodBase + "[[group]]\nid = \"sales\"\nmembers = [\"ivanov\"]\nring_timeout = 20\n",
			`19: group[0].ring_timeout: 20 is not a duration: a TOML integer has no unit (hint: use "20s")`},
		{"integer quoted", "[sip]\nmax_contacts = \"5\"\n",
			`2: sip.max_contacts: wrong type: got a TOML string, want an integer (hint: remove the quotes: max_contacts = 5)`},
		{"integer as words", "[sip.ban]\nmax_failures = \"five\"\n",
			`2: sip.ban.max_failures: wrong type: got a TOML string, want an integer (hint: strings need quotes, numbers and true/false do not, lists use [ ])`},
		{"integer as float", "[dial]\nper_line = 2.5\n",
			`2: dial.per_line: wrong type: got a TOML float, want an integer (hint: strings need quotes, numbers and true/false do not, lists use [ ])`},
		{"string unquoted number", strings.Replace(goodBase, `sip_password = "Phone101pass"`, `sip_password = 12345678`, 1),
			`15: employee[0].sip_password: wrong type: got a TOML integer, want a string (hint: put the value in quotes: sip_password = "12345678")`},
		{"boolean quoted", "[recording]\nenabled = \"yes\"\n",
			`2: recording.enabled: wrong type: got a TOML string, want true or false (hint: strings need quotes, numbers and true/false do not, lists use [ ])`},
		{"float field", "[crm.megaplan]\nrps = \"3\"\n",
			`2: crm.megaplan.rps: wrong type: got a TOML string, want a number (hint: remove the quotes: rps = 3)`},
		{"list as string", "[sip]\nlisten = \"udp:0.0.0.0:5060\"\n",
			`2: sip.listen: wrong type: got a TOML string, want a list of strings (hint: strings need quotes, numbers and true/false do not, lists use [ ])`},
		{"list element", "[sip]\ndigest_algorithms = [\n  \"MD5\",\n  256,\n]\n",
			`4: sip.digest_algorithms[1]: wrong type: got a TOML integer, want a string (hint: strings need quotes, numbers and true/false do not, lists use [ ])`},
		{"typed value not a string", "[media]\nrtp_ports = [20000, 20999]\n",
			`2: media.rtp_ports: wrong type: got a TOML array, want a string (hint: strings need quotes, numbers and true/false do not, lists use [ ])`},
		{"table as value", "log = \"debug\"\n",
			`1: log: wrong type: got a TOML string, want a table (hint: strings need quotes, numbers and true/false do not, lists use [ ])`},
		{"array of tables as table", "[employee]\nid = \"x\"\n",
			`1: employee: wrong type: got a TOML table, want [[employee]] tables (hint: strings need quotes, numbers and true/false do not, lists use [ ])`},
		{"date", "[console]\ntime_zone = 2026-01-01\n",
			`2: console.time_zone: wrong type: got a TOML date, want a string (hint: strings need quotes, numbers and true/false do not, lists use [ ])`},
		{"pointer field", goodBase + "[employee.dial]\nmax_concurrent = \"4\"\n",
			`17: employee[0].dial.max_concurrent: wrong type: got a TOML string, want an integer (hint: remove the quotes: max_concurrent = 4)`},
		{"unknown key", "[sip]\nrealm = \"x\"\nrelam = \"x\"\n",
			`3: unknown key "sip.relam" (hint: see configs/callgate.toml for every key; check the spelling and the [section] it is in)`},
		{"unknown table", "[sip]\nrealm = \"x\"\n[sipp]\nrealm = \"x\"\n",
			`3: unknown table "sipp" (hint: see configs/callgate.toml for every key; check the spelling and the [section] it is in)`},
		{"unknown key in the second employee", goodBase + "[[employee]]\nid = \"petrov\"\nextensions = [\"103\"]\nsip_password = \"Phone103pass\"\nphone = \"103\"\n",
			`20: unknown key "employee.phone" (hint: see configs/callgate.toml for every key; check the spelling and the [section] it is in)`},
		{"unknown key in a nested table", goodBase + "[employee.dial]\nallowed = [\"KZ\"]\n",
			`17: unknown key "employee.dial.allowed" (hint: see configs/callgate.toml for every key; check the spelling and the [section] it is in)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			problems := parseProblems(t, tc.doc)
			want := "bad.toml:" + tc.want
			var got []string
			for _, p := range problems {
				if p.String() == want {
					return
				}
				got = append(got, p.String())
			}
			t.Fatalf("want %q, got:\n%s", want, strings.Join(got, "\n"))
		})
	}
}

// Every problem of a file is reported in one run, in the order of its
// lines: unknown keys, wrong types and invalid values together.
func TestEveryProblemInOneRun(t *testing.T) {
	doc := `[sip]
realm = "callgate"
min_expires = 60
listne = ["udp:127.0.0.1:5060"]
max_contacts = 50
[media]
rtp_ports = "many"
[http]
api_tokens = ["abc"]
colour = "red"
[[employee]]
id = "ivanov"
extensions = ["101"]
sip_password = 12345678
`
	problems := parseProblems(t, doc)
	want := []string{
		`bad.toml:3: sip.min_expires: 60 is not a duration`,
		`bad.toml:4: unknown key "sip.listne"`,
		`bad.toml:5: sip.max_contacts: 50 is out of range`,
		`bad.toml:7: media.rtp_ports: "many" is not LOW-HIGH`,
		`bad.toml:9: http.api_tokens[0]: token is too weak`,
		`bad.toml:10: unknown key "http.colour"`,
		`bad.toml:14: employee[0].sip_password: wrong type`,
	}
	if len(problems) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(problems), len(want), &Error{Problems: problems})
	}
	for i, w := range want {
		if i >= len(problems) || !strings.HasPrefix(problems[i].String(), w) {
			t.Fatalf("problem %d: want %q, got:\n%v", i, w, &Error{Problems: problems})
		}
	}
}

// A value of the wrong type is left out; validation must not then report
// the key again as missing or out of range.
func TestWrongTypeNotReportedTwice(t *testing.T) {
	doc := strings.Replace(goodBase, `sip_password = "Phone101pass"`, `sip_password = 12345678`, 1)
	for _, p := range parseProblems(t, doc) {
		if strings.Contains(p.Msg, "missing sip_password") {
			t.Fatalf("reported twice: %v", p)
		}
	}
	if ps := parseProblems(t, "[sip]\nmin_expires = 60\n"); len(ps) != 1 {
		t.Fatalf("want only the unit problem, got:\n%v", &Error{Problems: ps})
	}
}

// Keys written correctly keep their values next to a key of the wrong
// type, and a good file decodes as before.
func TestDecodeKeepsGoodKeys(t *testing.T) {
	c, err := Parse("good.toml", []byte(goodBase+"[[group]]\nid = \"sales\"\nmembers = [\"ivanov\"]\nring_timeout = \"20s\"\n[group.dial]\ncalls_per_day = 7\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Groups[0].RingTimeout.D().String() != "20s" || c.Groups[0].Dial == nil || *c.Groups[0].Dial.CallsPerDay != 7 || c.Upstream.Accounts[0].Password != "Secret123" {
		t.Fatalf("decoded %+v %+v", c.Groups, c.Upstream.Accounts)
	}
}

// A document go-toml refuses as a whole is still reported with its line.
func TestDuplicateKey(t *testing.T) {
	ps := parseProblems(t, "[sip]\nrealm = \"a\"\nrealm = \"b\"\n")
	if len(ps) == 0 || ps[0].Line != 3 || !strings.Contains(ps[0].Hint, "once") {
		t.Fatalf("got %v", &Error{Problems: ps})
	}
}

// Duration.UnmarshalText is what go-toml calls for strings; its error says
// the same as Parse.
func TestDurationUnmarshalText(t *testing.T) {
	var d Duration
	for text, want := range map[string]string{
		"60":  `"60" is not a duration: the number has no unit (hint: use "60s")`,
		"1 m": `"1 m" is not a duration (hint: durations are quoted strings with a unit`,
	} {
		if err := d.UnmarshalText([]byte(text)); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
	if err := d.UnmarshalText([]byte("90s")); err != nil || d.D().String() != "1m30s" {
		t.Fatalf("90s: %v %v", d, err)
	}
}

func TestHumanTypeHasNoGoNames(t *testing.T) {
	for in, want := range map[string]string{
		"cannot decode TOML string into struct field config.SIP.MaxContacts of type int":              "wrong type: got a TOML string, want an integer",
		"cannot decode TOML integer into struct field config.SIP.Realm of type string":                "wrong type: got a TOML integer, want a string",
		"cannot decode TOML boolean into struct field config.SIP.Listen of type []config.ListenAddr":  "wrong type: got a TOML boolean, want a list",
		"cannot decode TOML string into struct field config.Config.Log of type config.Log":            "wrong type: got a TOML string, want a table",
		"cannot decode TOML integer into struct field config.Media.RTPPorts of type config.PortRange": "wrong type: got a TOML integer, want a string",
	} {
		if got := humanType(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
