package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodBase = `data_dir = "/tmp/cg"
[sip]
listen = ["udp:127.0.0.1:5060"]
[upstream]
registrar = "udp:127.0.0.1:5070"
domain = "vpbx1.mangosip.ru"
trusted_sources = ["127.0.0.1/32"]
[[upstream.account]]
user = "sales1"
password = "Secret123"
employee = "ivanov"
[[employee]]
id = "ivanov"
extensions = ["101"]
sip_password = "Phone101pass"
`

func TestReferenceConfigPasses(t *testing.T) {
	c, err := Load("../../configs/callgate.toml")
	if err != nil {
		t.Fatalf("configs/callgate.toml: %v", err)
	}
	if len(c.Employees) == 0 || len(c.Upstream.Accounts) == 0 {
		t.Fatalf("reference config lost its employees or accounts: %+v", c)
	}
	// Valid, but its example secrets are warned about (warnings_test.go).
	if len(c.Warnings) == 0 {
		t.Fatal("the reference config, with its example secrets, has no warnings")
	}
}

func TestGoodConfigDefaults(t *testing.T) {
	c, err := Parse("good.toml", []byte(goodBase))
	if err != nil {
		t.Fatal(err)
	}
	if c.SIP.Realm != "callgate" || c.SIP.MinExpires.D() != time.Minute || c.Recording.Dir != "/tmp/cg/recordings" {
		t.Fatalf("defaults not applied: %+v", c.SIP)
	}
	if len(c.SIP.Listen) != 1 {
		t.Fatalf("listen list should replace the default, got %v", c.SIP.Listen)
	}
}

func TestBrokenConfigs(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "empty.secret")
	if err := os.WriteFile(secret, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		doc  string
		want string // "LINE: fragment"
	}{
		{"syntax", "data_dir = \"/x\"\n[sip\n", "2: TOML syntax"},
		{"unknown key", goodBase + "colour = \"red\"\n", "16: unknown key \"employee.colour\""},
		{"unknown section key", "[sip]\nlistne = []\n", "2: unknown key \"sip.listne\""},
		{"wrong type", "[sip]\nmax_contacts = \"five\"\n", "2: sip.max_contacts: wrong type: got a TOML string, want an integer"},
		{"bad duration", "[sip]\nnonce_lifetime = \"60\"\n", "2: sip.nonce_lifetime: \"60\" is not a duration"},
		{"bad listen", "[sip]\nlisten = [\n  \"udp:127.0.0.1:5060\",\n  \"udp:localhost\",\n]\n", "4: sip.listen[1]: \"localhost\" is not IP:PORT"},
		{"listen transport", "[sip]\nlisten = [\"sctp:127.0.0.1:5060\"]\n", "2: sip.listen[0]"},
		{"duplicate listen", "[sip]\nlisten = [\"udp:127.0.0.1:5060\", \"udp:127.0.0.1:5060\"]\n", "2: sip.listen[1]: udp:127.0.0.1:5060 is listed twice"},
		{"rtp range odd", "[media]\nrtp_ports = \"20001-20999\"\n", "2: media.rtp_ports: the low port must be even"},
		{"rtp range order", "[media]\nrtp_ports = \"30000-20000\"\n", "2: media.rtp_ports: the range must hold"},
		{"rtp range text", "\n[media]\nrtp_ports = \"many\"\n", "3: media.rtp_ports: \"many\" is not LOW-HIGH"},
		{"bad cidr", "[sip]\nallow_networks = [\"192.168.1.0/33\"]\n", "2: sip.allow_networks[0]: \"192.168.1.0/33\" is not a CIDR"},
		{"bad trusted", strings.Replace(goodBase, `["127.0.0.1/32"]`, `["127.0.0.1/33"]`, 1), "7: upstream.trusted_sources[0]"},
		{"three extensions", strings.Replace(goodBase, `["101"]`, `["101", "102", "103"]`, 1), "14: employee[0].extensions: has 3 extensions"},
		{"no extensions", strings.Replace(goodBase, `["101"]`, `[]`, 1), "14: employee[0].extensions: has 0 extensions"},
		{"extension twice", goodBase + "[[employee]]\nid = \"petrov\"\nextensions = [\"101\"]\nsip_password = \"Phone103pass\"\n", "18: employee[1].extensions[0]: extension 101 is used twice"},
		{"employee twice", goodBase + "[[employee]]\nid = \"ivanov\"\nextensions = [\"105\"]\nsip_password = \"Phone103pass\"\n", "17: employee[1].id: employee \"ivanov\" is defined twice"},
		{"unknown employee", strings.Replace(goodBase, `employee = "ivanov"`, `employee = "sidorov"`, 1), "11: upstream.account[0].employee: unknown employee \"sidorov\""},
		{"duplicate account", strings.Replace(goodBase, "[[employee]]", "[[upstream.account]]\nuser = \"SALES1\"\npassword = \"Other123x\"\n[[employee]]", 1), "13: upstream.account[1].user: account \"SALES1\" is configured twice"},
		{"missing account password", strings.Replace(goodBase, "password = \"Secret123\"\n", "", 1), "8: upstream.account[0].password: missing password"},
		{"missing phone password", strings.Replace(goodBase, "sip_password = \"Phone101pass\"\n", "", 1), "12: employee[0].sip_password: missing sip_password"},
		{"unreadable secret", strings.Replace(goodBase, "password = \"Secret123\"", "password_file = \"/nonexistent/sales1.secret\"", 1), "10: upstream.account[0].password_file: cannot read secret"},
		{"empty secret", strings.Replace(goodBase, "sip_password = \"Phone101pass\"", "sip_password_file = \""+secret+"\"", 1), "15: employee[0].sip_password_file: " + secret + " is empty"},
		{"both secret and file", strings.Replace(goodBase, "password = \"Secret123\"", "password = \"Secret123\"\npassword_file = \"x\"", 1), "10: upstream.account[0].password: both password and password_file are set"},
		{"expires order", "[sip]\nmin_expires = \"600s\"\nmax_expires = \"300s\"\n", "3: sip.max_expires: 5m0s is below min_expires"},
		{"bad http", "[http]\nlisten = \"localhost:80\"\n", "2: http.listen"},
		{"weak token", "[http]\napi_tokens = [\"abc\"]\n", "2: http.api_tokens[0]: token is too weak"},
		{"short phone password", strings.Replace(goodBase, "Phone101pass", "1234", 1), "15: employee[0].sip_password: too short"},
		{"bad extension", strings.Replace(goodBase, `["101"]`, `["1a"]`, 1), "14: employee[0].extensions[0]: \"1a\" is not a valid extension"},
		{"bad algorithm", "[sip]\ndigest_algorithms = [\"SHA1\"]\n", "2: sip.digest_algorithms[0]: unsupported algorithm"},
		{"unknown group member", goodBase + "[[group]]\nid = \"sales\"\nmembers = [\"ivanov\", \"nobody\"]\n", "18: group[0].members[1]: unknown employee \"nobody\""},
		{"bad strategy", goodBase + "[[group]]\nid = \"sales\"\nstrategy = \"random\"\nmembers = [\"ivanov\"]\n", "18: group[0].strategy: unknown strategy"},
		{"account to unknown group", strings.Replace(goodBase, `employee = "ivanov"`, `group = "support"`, 1), "11: upstream.account[0].group: unknown group \"support\""},
		{"token for unknown employee", goodBase + "[[http.token]]\nscope = \"employee:sidorov\"\ntoken = \"sidorov-token-0123456789\"\n", "17: http.token[0].scope: unknown employee \"sidorov\""},
		{"unknown token scope", goodBase + "[[http.token]]\nscope = \"root\"\ntoken = \"root-token-0123456789\"\n", "17: http.token[0].scope: unknown scope \"root\""},
		{"weak scoped token", goodBase + "[[http.token]]\nscope = \"crm:retailcrm\"\ntoken = \"short\"\n", "18: http.token[0].token: token is too weak"},
		{"token missing", goodBase + "[[http.token]]\nscope = \"admin\"\n", "16: http.token[0].token: missing token"},
		{"tls half", "[http]\ntls_cert = \"/etc/ssl/certs/x.pem\"\n", "2: http.tls_cert: tls_cert and tls_key go together"},
		{"public url", "[http]\npublic_url = \"callgate.example.ru\"\n", "2: http.public_url: \"callgate.example.ru\" is not an http(s) URL"},
		{"recording access", "[http]\nrecording_access = \"some\"\n", "2: http.recording_access: unknown value \"some\""},
		{"megaplan user twice", goodBase + "megaplan_user = 1000005\n[[employee]]\nid = \"petrov\"\nextensions = [\"103\"]\nsip_password = \"Phone103pass\"\nmegaplan_user = 1000005\n", "21: employee[1].megaplan_user: Megaplan user 1000005 is also mapped to ivanov"},
		{"deal without scheme", strings.Replace(goodBase, `employee = "ivanov"`, "employee = \"ivanov\"\nautocreate = \"contact+deal\"", 1) + "[crm.megaplan]\nenabled = true\nurl = \"https://office.megaplan.ru\"\nusername = \"api\"\npassword = \"Secret123\"\n", "8: upstream.account[0].program: is required"},
		{"megaplan without user", "[crm.megaplan]\nenabled = true\nurl = \"https://office.megaplan.ru\"\npassword = \"x\"\n", "1: crm.megaplan.username: missing username"},
		{"megaplan rps", "[crm.megaplan]\nenabled = true\nurl = \"https://office.megaplan.ru\"\nusername = \"api\"\npassword = \"x\"\nrps = 0.0\n", "6: crm.megaplan.rps"},
		{"unknown tracking", strings.Replace(goodBase, `employee = "ivanov"`, "employee = \"ivanov\"\ntracking = \"utm\"", 1), "12: upstream.account[0].tracking: unknown value \"utm\""},
		{"dynamic tracking without mango key", strings.Replace(goodBase, `employee = "ivanov"`, "employee = \"ivanov\"\ntracking = \"dynamic\"", 1), " mango.api_key: missing api_key"},
		{"business hours", "[console]\nbusiness_hours = \"18:00-09:00\"\n", "2: console.business_hours: \"18:00-09:00\" is not a time range"},
		{"business day", "[console]\nbusiness_days = [\"mon\", \"funday\"]\n", "2: console.business_days[1]: unknown day"},
		{"ban per ip below", "[sip.ban]\nmax_failures = 10\nmax_failures_per_ip = 3\n", "3: sip.ban.max_failures_per_ip"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.toml", []byte(tc.doc))
			if err == nil {
				t.Fatalf("accepted a broken config:\n%s", tc.doc)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, want *config.Error: %v", err, err)
			}
			want := "bad.toml:" + tc.want
			for _, p := range ce.Problems {
				if strings.HasPrefix(p.String(), want) {
					if p.Hint == "" {
						t.Errorf("problem %q has no hint", p)
					}
					return
				}
			}
			t.Fatalf("want a problem starting %q, got:\n%v", want, err)
		})
	}
}

func TestSecretFromFileRelative(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.secret"), []byte("FromFile123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(goodBase, "password = \"Secret123\"", "password_file = \"p.secret\"", 1)
	path := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Upstream.Accounts[0].Password; got != "FromFile123" {
		t.Fatalf("password from file = %q", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodBase))
	f.Add([]byte("[sip]\nlisten = [\"udp:1.2.3.4:5\"]\n[[employee]]\n"))
	f.Add([]byte("[sip]\nmin_expires = 60\nmax_contacts = \"5\"\nlistne = 1\n[[employee]]\nid = 1\n[employee.dial]\nmax_concurrent = \"x\"\n[nope]\na = 2026-01-01\n"))
	f.Add([]byte("[http]\nlisten = \"127.0.0.1:8080\"\napi_tokens = [\"change-me-to-a-long-random-token\"]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse("fuzz.toml", b)
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
		if err != nil && err.Error() == "" {
			t.Fatal("empty error")
		}
	})
}

func TestOutOfHours(t *testing.T) {
	c := Defaults().Console
	if c.OutOfHours() != nil {
		t.Fatal("no business hours configured, yet a check")
	}
	c.BusinessHours = "09:00-18:00"
	out := c.OutOfHours()
	msk := time.FixedZone("MSK", 3*3600)
	for at, want := range map[time.Time]bool{
		time.Date(2026, 11, 30, 9, 0, 0, 0, msk):       false, // Monday, opening
		time.Date(2026, 11, 30, 17, 59, 0, 0, msk):     false,
		time.Date(2026, 11, 30, 18, 0, 0, 0, msk):      true,
		time.Date(2026, 11, 30, 5, 59, 0, 0, time.UTC): true, // 08:59 in Moscow
		time.Date(2026, 11, 29, 12, 0, 0, 0, msk):      true, // Sunday
	} {
		if out(at) != want {
			t.Errorf("%s: out of hours %v, want %v", at, !want, want)
		}
	}
}
