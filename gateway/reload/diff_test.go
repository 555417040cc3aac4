package reload

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"callgate/gateway/config"
)

const base = `data_dir = "/tmp/cg"
[log]
level = "info"
[sip]
listen = ["udp:127.0.0.1:5060"]
max_expires = "1h"
[media]
rtp_ports = "20000-20999"
[http]
listen = "127.0.0.1:8080"
api_tokens = ["admin-token-0123456789"]
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

func parse(t *testing.T, doc string) *config.Config {
	t.Helper()
	c, err := config.Parse("callgate.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Changed keys that cannot change while running are named and keep their
// running value; live keys take the new one; a value written another way
// ("udp:IP:PORT" and "IP:PORT") is no change.
func TestEffectiveNamesWhatNeedsRestart(t *testing.T) {
	running := parse(t, base)
	doc := strings.NewReplacer(
		`data_dir = "/tmp/cg"`, `data_dir = "/tmp/cg2"`,
		`level = "info"`, `level = "debug"`,
		`listen = ["udp:127.0.0.1:5060"]`, `listen = ["127.0.0.1:5060", "tcp:127.0.0.1:5060"]`,
		`max_expires = "1h"`, `max_expires = "30m"`,
		`rtp_ports = "20000-20999"`, `rtp_ports = "30000-30999"`,
		`listen = "127.0.0.1:8080"`, `listen = "127.0.0.1:8081"`,
		`api_tokens = ["admin-token-0123456789"]`, `api_tokens = ["admin-token-9876543210"]`,
		`trusted_sources = ["127.0.0.1/32"]`, `trusted_sources = ["127.0.0.0/8"]`,
		`password = "Secret123"`, `password = "Secret124"`,
	).Replace(base) + `[[employee]]
id = "petrov"
extensions = ["103"]
sip_password = "Phone103pass"
[console]
business_hours = "09:00-18:00"
time_zone = "Europe/Samara"
[crm.megaplan]
exclude = ["petrov"]
`
	next := parse(t, doc)
	eff, restart := Effective(running, next, true)
	// recording.dir is under data_dir unless set.
	want := []string{"console.time_zone", "data_dir", "http.listen", "log.level", "media.rtp_ports", "recording.dir", "sip.listen", "upstream.trusted_sources"}
	if !slices.Equal(restart, want) {
		t.Fatalf("needs restart %v, want %v", restart, want)
	}
	if eff.DataDir != "/tmp/cg" || eff.Log.Level != "info" || len(eff.SIP.Listen) != 1 || eff.Media.RTPPorts.Lo != 20000 ||
		eff.HTTP.Listen != "127.0.0.1:8080" || eff.Console.TimeZone != running.Console.TimeZone || eff.Upstream.TrustedSources[0].String() != "127.0.0.1/32" {
		t.Fatalf("a key that needs a restart took the new value: %+v", eff)
	}
	if len(eff.Employees) != 2 || eff.SIP.MaxExpires.D().Minutes() != 30 || eff.HTTP.APITokens[0] != "admin-token-9876543210" ||
		eff.Upstream.Accounts[0].Password != "Secret124" || eff.Console.BusinessHours != "09:00-18:00" || eff.CRM.Megaplan.Exclude[0] != "petrov" {
		t.Fatalf("a live key kept its old value: %+v", eff)
	}
	if next.DataDir != "/tmp/cg2" || running.Employees[0].ID != "ivanov" || len(running.Employees) != 1 {
		t.Fatal("Effective changed its arguments")
	}
	if _, again := Effective(running, parse(t, strings.Replace(base, `["udp:127.0.0.1:5060"]`, `["127.0.0.1:5060"]`, 1)), true); len(again) != 0 {
		t.Fatalf("the same address written without its transport needs a restart: %v", again)
	}
}

// Without upstream accounts at start there is no registration to add one
// to: new accounts wait for a restart.
func TestAccountsAddedToNoneNeedARestart(t *testing.T) {
	running := parse(t, strings.Split(base, "[upstream]")[0]+"[[employee]]\nid = \"ivanov\"\nextensions = [\"101\"]\nsip_password = \"Phone101pass\"\n")
	next := parse(t, base)
	eff, restart := Effective(running, next, false)
	if !slices.Contains(restart, "upstream.account") || len(eff.Upstream.Accounts) != 0 {
		t.Fatalf("restart %v, accounts %v", restart, eff.Upstream.Accounts)
	}
}

// Every live key is a key of the configuration (a renamed key fails here,
// not silently at a reload).
func TestLiveKeysExist(t *testing.T) {
	for _, key := range Live {
		typ := reflect.TypeFor[config.Config]()
		for _, part := range strings.Split(key, ".") {
			found := false
			for i := range typ.NumField() {
				if name, _, _ := strings.Cut(typ.Field(i).Tag.Get("toml"), ","); name == part {
					typ, found = typ.Field(i).Type, true
					break
				}
			}
			if !found {
				t.Fatalf("live key %q: no %q in the configuration", key, part)
			}
		}
	}
}
