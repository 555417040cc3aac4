package config

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// adminHash is a bcrypt hash (cost 4, for speed) of a password that is no
// example.
var adminHash = func() string {
	h, err := bcrypt.GenerateFromPassword([]byte("Office-Admin-7"), 4)
	if err != nil {
		panic(err)
	}
	return string(h)
}()

// quietBase is goodBase with its secrets replaced by real-looking ones and
// an admin who can log in: it has no warnings.
var quietBase = strings.NewReplacer(
	`password = "Secret123"`, `password = "vpbx-Zq81mWc0"`,
	`sip_password = "Phone101pass"`, `sip_password = "a9Kc2LpQ0xRv"`+"\npassword_hash = \""+adminHash+"\"\nrole = \"admin\"",
).Replace(goodBase)

func warningsOf(t *testing.T, doc string) []Problem {
	t.Helper()
	c, err := Parse("w.toml", []byte(doc))
	if err != nil {
		t.Fatalf("valid config refused: %v\n%s", err, doc)
	}
	return c.Warnings
}

func TestNoWarnings(t *testing.T) {
	if ws := warningsOf(t, quietBase); len(ws) != 0 {
		t.Fatalf("unexpected warnings:\n%v", &Error{Problems: ws})
	}
	// HTTP off: no console to log in to or to reach.
	off := strings.Replace(quietBase, "[upstream]", "[http]\nlisten = \"\"\n[upstream]", 1)
	off = strings.NewReplacer("password_hash = \""+adminHash+"\"\n", "", "role = \"admin\"\n", "").Replace(off)
	if ws := warningsOf(t, off); len(ws) != 0 {
		t.Fatalf("HTTP off, yet warnings:\n%v", &Error{Problems: ws})
	}
}

func TestWarnings(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want string // the whole warning after "w.toml:"
	}{
		{"example account password", strings.Replace(quietBase, "vpbx-Zq81mWc0", "Secret123", 1),
			"10: warning: upstream.account[0].password: is the example value from configs/callgate.toml (hint: write the SIP password of this account from the VPBX's settings)"},
		{"example phone password", strings.Replace(quietBase, "a9Kc2LpQ0xRv", "Phone101pass", 1),
			"15: warning: employee[0].sip_password: is the example value from configs/callgate.toml (hint: give every phone its own password of 12 or more characters, e.g. from `openssl rand -base64 12`)"},
		{"example desk password", quietBase + "[[desk]]\nextension = \"110\"\nsip_password = \"Desk110pass\"\n",
			"20: warning: desk[0].sip_password: is the example value from configs/callgate.toml (hint: give every phone its own password of 12 or more characters, e.g. from `openssl rand -base64 12`)"},
		{"example api token", strings.Replace(quietBase, "[upstream]", "[http]\napi_tokens = [\"change-me-to-a-long-random-token\"]\n[upstream]", 1),
			"5: warning: http.api_tokens[0]: is the example value from configs/callgate.toml (hint: make a token with `openssl rand -hex 20`)"},
		{"change-me token", quietBase + "[[http.token]]\nscope = \"admin\"\ntoken = \"please-CHANGE-ME-soon\"\n",
			"20: warning: http.token[0].token: is the example value from configs/callgate.toml (hint: make a token with `openssl rand -hex 20`)"},
		{"example console password", strings.Replace(quietBase, adminHash, exampleAdminHash, 1),
			"16: warning: employee[0].password_hash: is the example value from configs/callgate.toml (hint: set this employee's own console password: callgate hash-password)"},
		{"nobody can log in", strings.Replace(quietBase, "password_hash = \""+adminHash+"\"\n", "", 1),
			"12: warning: employee[0]: no employee has a console password (password_hash): nobody can log in to the console (hint: set password_hash (the output of callgate hash-password) and role = \"admin\" for whoever runs callgate)"},
		{"no employees at all", "[sip]\nrealm = \"x\"\n",
			"warning: employee: no employee has a console password (password_hash): nobody can log in to the console"},
		{"no admin", strings.Replace(quietBase, `role = "admin"`, `role = "manager"`, 1),
			"12: warning: employee[0]: no employee with role = \"admin\" has a console password: nobody can open the admin page (hint: give whoever runs callgate role = \"admin\" and a password_hash (callgate hash-password))"},
		{"admin without password", strings.Replace(quietBase, `role = "admin"`, `role = "employee"`, 1) +
			"[[employee]]\nid = \"boss\"\nextensions = [\"109\"]\nsip_password = \"b0ssPhone-991\"\nrole = \"admin\"\n",
			"12: warning: employee[0]: no employee with role = \"admin\" has a console password"},
		{"console on loopback, phones on the LAN", strings.NewReplacer(`listen = ["udp:127.0.0.1:5060"]`, `listen = ["udp:0.0.0.0:5060"]`,
			"[upstream]", "[http]\nlisten = \"127.0.0.1:8080\"\n[upstream]").Replace(quietBase),
			"5: warning: http.listen: the console listens on loopback only (127.0.0.1:8080) while phones may register from the LAN: office PCs cannot open it (hint: listen on the office LAN address, e.g. listen = \"192.168.1.10:8080\" (or \"0.0.0.0:8080\"), or put a reverse proxy on the LAN in front of it)"},
		{"console on ::1, phones on a LAN address", strings.NewReplacer(`listen = ["udp:127.0.0.1:5060"]`, `listen = ["udp:192.168.1.10:5060"]`,
			"[upstream]", "[http]\nlisten = \"[::1]:8080\"\n[upstream]").Replace(quietBase),
			"5: warning: http.listen: the console listens on loopback only ([::1]:8080)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws := warningsOf(t, tc.doc)
			want := "w.toml:" + tc.want
			if strings.HasPrefix(tc.want, "warning") { // not tied to a line
				want = "w.toml: " + tc.want
			}
			for _, w := range ws {
				if !w.Warning {
					t.Errorf("%v is not marked a warning", w)
				}
				if strings.HasPrefix(w.String(), want) {
					return
				}
			}
			t.Fatalf("want %q, got:\n%v", want, &Error{Problems: ws})
		})
	}
}

// Phones that may only register on loopback, or a console on the LAN,
// need no warning about reaching the console.
func TestConsoleReachQuiet(t *testing.T) {
	for name, doc := range map[string]string{
		"phones on loopback only": strings.Replace(quietBase, "[upstream]", "[http]\nlisten = \"127.0.0.1:8080\"\n[upstream]", 1),
		"only loopback allowed": strings.NewReplacer(`listen = ["udp:127.0.0.1:5060"]`, "listen = [\"udp:0.0.0.0:5060\"]\nallow_networks = [\"127.0.0.0/8\"]",
			"[upstream]", "[http]\nlisten = \"127.0.0.1:8080\"\n[upstream]").Replace(quietBase),
		"console on the LAN": strings.NewReplacer(`listen = ["udp:127.0.0.1:5060"]`, `listen = ["udp:0.0.0.0:5060"]`,
			"[upstream]", "[http]\nlisten = \"0.0.0.0:8080\"\n[upstream]").Replace(quietBase),
	} {
		if ws := warningsOf(t, doc); len(ws) != 0 {
			t.Errorf("%s: unexpected warnings:\n%v", name, &Error{Problems: ws})
		}
	}
}

// exampleAdminHash is the password_hash configs/callgate.toml ships.
const exampleAdminHash = "$2a$12$ir76tq6bEg4FLseTzWRO6e51P4ptkz3NzAivvjezvZFCI7ZLdngKi"

// The reference config is valid, and every example secret in it is
// warned about: the placeholder list cannot drift from the file. Its
// console has an admin who can log in with the password its comment names.
func TestPlaceholdersMatchReference(t *testing.T) {
	c, err := Load("../../configs/callgate.toml")
	if err != nil {
		t.Fatal(err)
	}
	warned := map[string]bool{}
	for _, w := range c.Warnings {
		warned[strings.SplitN(w.Msg, ":", 2)[0]] = true
	}
	secrets := map[string]string{}
	for i, a := range c.Upstream.Accounts {
		secrets[fmt.Sprintf("upstream.account[%d].password", i)] = a.Password
	}
	admin := false
	for i, e := range c.Employees {
		secrets[fmt.Sprintf("employee[%d].sip_password", i)] = e.SIPPassword
		secrets[fmt.Sprintf("employee[%d].password_hash", i)] = e.PasswordHash
		if e.Role == "admin" && e.PasswordHash != "" {
			admin = true
			if bcrypt.CompareHashAndPassword([]byte(e.PasswordHash), []byte("change-me-now")) != nil {
				t.Errorf("employee[%d].password_hash is not the hash of change-me-now, as the comment says", i)
			}
		}
	}
	for i, tok := range c.HTTP.APITokens {
		secrets[fmt.Sprintf("http.api_tokens[%d]", i)] = tok
	}
	for path, s := range secrets {
		if s != "" && !warned[path] {
			t.Errorf("%s is an example secret of configs/callgate.toml, yet not warned about", path)
		}
	}
	if !admin {
		t.Error("the reference config has no admin with a console password")
	}
	if !warned["http.listen"] {
		t.Error("the reference config's loopback console is not warned about")
	}
	if !placeholders[exampleAdminHash] {
		t.Error("the example admin hash is not a placeholder")
	}
}

func TestWarningString(t *testing.T) {
	w := Problem{File: "c.toml", Line: 7, Msg: "x: y", Hint: "z", Warning: true}
	if got := w.String(); got != "c.toml:7: warning: x: y (hint: z)" {
		t.Fatalf("%q", got)
	}
}
