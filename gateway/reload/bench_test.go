package reload

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"callgate/gateway/config"
	"callgate/gateway/crmlink"
	"callgate/gateway/directory"
	"callgate/gateway/routing"
	"callgate/sip/location"
	"callgate/sip/registrar"
	"callgate/sip/sipnet"
	"callgate/sip/trunk"
)

// adminHash is the console password hash of the big office's admin.
const adminHash = "$2a$10$7EqJtq98hPqEX7fNZaFWoOhi5BWX4Z8Q3y1H6vZ5H0a8p4N8x9O2G"

// bigOffice is a configuration of employees employees, the first accounts
// of them with an upstream account each; password is every phone's. It is
// written as an office would write it, without warnings: an admin with a
// console password, passwords of its own.
func bigOffice(employees, accounts int, password string) string {
	var b strings.Builder
	b.WriteString(`data_dir = "/tmp/cg"
[sip]
listen = ["udp:127.0.0.1:5060"]
[upstream]
registrar = "udp:127.0.0.1:5070"
domain = "vpbx1.mangosip.ru"
trusted_sources = ["127.0.0.1/32"]
[http]
api_tokens = ["office-token-7f3a9c2e51"]
`)
	for i := range accounts {
		fmt.Fprintf(&b, "[[upstream.account]]\nuser = \"acc%d\"\npassword = \"Vpbx-acc-secret\"\nemployee = \"e%d\"\n", 30000+i, 30000+i)
	}
	for i := range employees {
		fmt.Fprintf(&b, "[[employee]]\nid = \"e%d\"\nextensions = [\"%d\"]\nsip_password = %q\nretailcrm_user = %d\n", 30000+i, 30000+i, password, i+1)
		if i == 0 {
			fmt.Fprintf(&b, "role = \"admin\"\npassword_hash = %q\n", adminHash)
		}
	}
	return b.String()
}

// BenchmarkReload1000Employees: reading a file of 1,000 employees and 500
// accounts (config.Load, what check-config does) and applying it to the
// real directory, location table, router and CRM link, every password
// changed each time.
func BenchmarkReload1000Employees(b *testing.B) {
	dir := b.TempDir()
	files := [2]string{filepath.Join(dir, "a.toml"), filepath.Join(dir, "b.toml")}
	for i, pw := range []string{"Office-ext-pass1", "Office-ext-pass2"} {
		if err := os.WriteFile(files[i], []byte(bigOffice(1000, 500, pw)), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	cfg, err := config.Load(files[0])
	if err != nil {
		b.Fatal(err)
	}
	if len(cfg.Warnings) > 0 {
		b.Fatalf("the big office has warnings: %v", cfg.Warnings)
	}
	log := slog.New(slog.DiscardHandler)
	r := New(cfg, log)
	d := directory.New(cfg)
	link, err := crmlink.New(cfg, crmlink.Deps{Log: log})
	if err != nil {
		b.Fatal(err)
	}
	r.Attach(Parts{Directory: d, Bindings: location.New(), Router: routing.New(cfg, d), CRM: link,
		Registrar: nopRegistrar{}, Phones: nopPhones{}, Calls: nopCalls{}, Model: nopModel{}, Trunk: nopTrunk{}})
	b.Run("load", func(b *testing.B) {
		for i := range b.N {
			if _, err := config.Load(files[i%2]); err != nil {
				b.Fatal(err)
			}
		}
	})
	next := [2]*config.Config{}
	for i := range files {
		if next[i], err = config.Load(files[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("apply", func(b *testing.B) {
		for i := range b.N {
			r.Apply(next[i%2])
		}
	})
}

type (
	nopRegistrar struct{}
	nopPhones    struct{}
	nopCalls     struct{}
	nopModel     struct{}
	nopTrunk     struct{}
)

func (nopRegistrar) SetConfig(registrar.Config) {}
func (nopPhones) SetPhones(sipnet.Networks)     {}
func (nopCalls) SetAccounts(map[string]bool)    {}
func (nopCalls) SetRingTimeout(time.Duration)   {}
func (nopModel) SetAccounts([]config.Account)   {}
func (nopTrunk) SetAccounts([]trunk.Account)    {}
