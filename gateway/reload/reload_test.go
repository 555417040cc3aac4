package reload

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"callgate/gateway/api"
	"callgate/gateway/config"
	"callgate/gateway/directory"
	"callgate/sip/location"
	"callgate/sip/registrar"
	"callgate/sip/sipnet"
	"callgate/sip/trunk"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// parts records what each part was given, in order.
type parts struct {
	mu  sync.Mutex
	log []string
}

func (p *parts) note(s string) { p.mu.Lock(); p.log = append(p.log, s); p.mu.Unlock() }

type fakeRegistrar struct{ p *parts }

func (f fakeRegistrar) SetConfig(c registrar.Config) {
	f.p.note("registrar max_expires=" + c.MaxExpires.String())
}

type fakePhones struct{ p *parts }

func (f fakePhones) SetPhones(n sipnet.Networks) { f.p.note("phones " + n[0].String()) }

type fakeRouter struct{ p *parts }

func (f fakeRouter) Reload(c *config.Config) { f.p.note("router " + c.Calls.RingTimeout.D().String()) }

type fakeCalls struct{ p *parts }

func (f fakeCalls) SetAccounts(users map[string]bool) {
	var u []string
	for k := range users {
		u = append(u, k)
	}
	slices.Sort(u)
	f.p.note("b2bua accounts " + strings.Join(u, ","))
}
func (f fakeCalls) SetRingTimeout(d time.Duration) { f.p.note("b2bua ring " + d.String()) }

type fakeModel struct{ p *parts }

func (f fakeModel) SetAccounts(a []config.Account) { f.p.note("model accounts " + itoa(len(a))) }

type fakeTrunk struct{ p *parts }

func (f fakeTrunk) SetAccounts(a []trunk.Account) {
	var u []string
	for _, x := range a {
		u = append(u, x.User+":"+x.Password)
	}
	f.p.note("trunk " + strings.Join(u, ","))
}

type fakeCRM struct{ p *parts }

func (f fakeCRM) Reload(c *config.Config) {
	f.p.note("crm exclude " + strings.Join(c.CRM.RetailCRM.Exclude, ","))
}

type fakeTokens struct{ p *parts }

func (f fakeTokens) Replace(admin []string, scoped ...api.Token) {
	f.p.note("tokens " + itoa(len(admin)) + "+" + itoa(len(scoped)))
}

type fakeSessions struct{ p *parts }

func (f fakeSessions) Replace(accounts []api.Account, names map[string]string, all bool) {
	f.p.note("sessions " + itoa(len(accounts)) + " " + names["sidorov"])
}

type fakeRecordings struct{ p *parts }

func (f fakeRecordings) SetLimits(r time.Duration, minFree uint64) {
	f.p.note("recordings " + r.String() + " " + itoa(int(minFree>>20)) + "MiB")
}

func itoa(n int) string { return strconv.Itoa(n) }

// value is a collector's only value.
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

const office = base + `[[employee]]
id = "petrov"
name = "Петров"
extensions = ["103"]
sip_password = "Phone103pass"
password_hash = "$2a$04$0123456789012345678901abcdefghijklmnopqrstuvwxyzABCDE"
`

// A reload reaches every part in order, removes the registrations of the
// extensions that are gone, counts itself and says in one line what
// needs a restart.
func TestApplyReachesEveryPart(t *testing.T) {
	running := parse(t, office)
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	r := New(running, log)
	p := &parts{}
	dir := directory.New(running)
	loc := location.New()
	now := time.Now()
	for _, ext := range []string{"101", "103"} {
		_, _ = loc.Modify(ext, now, func([]location.Binding) ([]location.Binding, error) {
			return []location.Binding{{AOR: ext, Contact: "sip:" + ext + "@127.0.0.1:5099", Expires: now.Add(time.Hour)}}, nil
		})
	}
	r.Attach(Parts{Directory: dir, Bindings: loc, Registrar: fakeRegistrar{p}, Phones: fakePhones{p}, Router: fakeRouter{p}, Calls: fakeCalls{p},
		Model: fakeModel{p}, Trunk: fakeTrunk{p}, CRM: fakeCRM{p}, Tokens: fakeTokens{p}, Sessions: fakeSessions{p}, Recordings: fakeRecordings{p}})

	next := parse(t, strings.Replace(office, `id = "petrov"
name = "Петров"
extensions = ["103"]`, `id = "sidorov"
name = "Сидоров"
extensions = ["104"]`, 1)+`[[upstream.account]]
user = "support"
password = "Secret456"
employee = "sidorov"
[calls]
ring_timeout = "20s"
shutdown_grace = "1m"
[recording]
retention = "720h"
min_free = "2GiB"
[crm.retailcrm]
exclude = ["sidorov"]
[console]
business_hours = "09:00-18:00"
`)
	monday8 := time.Date(2026, 1, 5, 5, 0, 0, 0, time.UTC) // 08:00 in Moscow, a Monday
	if r.OutOfHours(monday8) {
		t.Fatal("out of hours without business hours")
	}
	res := r.Apply(next)

	want := []string{
		"registrar max_expires=1h0m0s", "phones 10.0.0.0/8", "router 20s", "b2bua accounts sales1,support", "b2bua ring 20s",
		"model accounts 2", "trunk sales1:Secret123,support:Secret456", "crm exclude sidorov", "tokens 1+0", "sessions 1 Сидоров",
		"recordings 720h0m0s 2048MiB",
	}
	if !slices.Equal(p.log, want) {
		t.Fatalf("parts got\n%s\nwant\n%s", strings.Join(p.log, "\n"), strings.Join(want, "\n"))
	}
	if !slices.Equal(res.Gone, []string{"103"}) || res.Unbound != 1 || len(loc.Lookup("103", now)) != 0 || len(loc.Lookup("101", now)) != 1 {
		t.Fatalf("gone %v, unbound %d; 103 bound %d, 101 bound %d", res.Gone, res.Unbound, len(loc.Lookup("103", now)), len(loc.Lookup("101", now)))
	}
	if _, ok := dir.Employee("sidorov"); !ok {
		t.Fatal("the directory did not get the new employee")
	}
	if res.EmployeesAdded != 1 || res.EmployeesRemoved != 1 || res.AccountsAdded != 1 || res.AccountsRemoved != 0 {
		t.Fatalf("result %+v", res)
	}
	if !slices.Equal(res.NeedsRestart, []string{"calls.shutdown_grace"}) {
		t.Fatalf("needs restart %v", res.NeedsRestart)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `msg="configuration reloaded; needs restart" keys=calls.shutdown_grace`) {
		t.Fatalf("log:\n%s", out.String())
	}
	if strings.Contains(out.String(), "Secret456") {
		t.Fatal("a password in the log")
	}
	if v := value(t, r.total.WithLabelValues("ok")); v != 1 {
		t.Fatalf("ok reloads %v", v)
	}
	if !r.OutOfHours(monday8) {
		t.Fatal("the new business hours are not in force")
	}

	// The same file again: nothing to restart, a plain line.
	out.Reset()
	p.log = nil
	if res := r.Apply(next); len(res.NeedsRestart) != 1 || res.EmployeesAdded != 0 {
		t.Fatalf("second reload %+v", res)
	}
}

// A file with problems changes nothing: no part is touched, each problem
// is logged with FILE:LINE, the error is counted and the time of the last
// success stays.
func TestBrokenFileChangesNothing(t *testing.T) {
	running := parse(t, office)
	var out bytes.Buffer
	r := New(running, slog.New(slog.NewTextHandler(&out, nil)))
	p := &parts{}
	r.Attach(Parts{Registrar: fakeRegistrar{p}, Router: fakeRouter{p}, Trunk: fakeTrunk{p}})
	reg := prometheus.NewRegistry()
	reg.MustRegister(r.Collectors()...)
	before := value(t, r.last)
	path := filepath.Join(t.TempDir(), "callgate.toml")
	broken := office + "[calls]\nring_timeout = \"20\"\n[[employee]]\nid = \"kozlov\"\nextensions = [\"101\"]\nsip_password = \"Phone105pass\"\n"
	if err := os.WriteFile(path, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Load(path); err == nil {
		t.Fatal("a broken file was accepted")
	}
	if len(p.log) != 0 {
		t.Fatalf("parts were touched: %v", p.log)
	}
	lineOf := func(s string) string {
		for i, l := range strings.Split(broken, "\n") {
			if strings.Contains(l, s) {
				return itoa(i + 1)
			}
		}
		return "?"
	}
	for _, want := range []string{path + ":" + lineOf(`ring_timeout = "20"`), "configuration reload refused"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, out.String())
		}
	}
	if v := value(t, r.total.WithLabelValues("error")); v != 1 {
		t.Fatalf("error reloads %v", v)
	}
	if value(t, r.last) != before || value(t, r.total.WithLabelValues("ok")) != 0 {
		t.Fatal("a refused reload counted as a success")
	}
	if err := r.Load(filepath.Join(t.TempDir(), "missing.toml")); err == nil || value(t, r.total.WithLabelValues("error")) != 2 {
		t.Fatalf("a missing file: %v", err)
	}
	mfs, err := reg.Gather()
	n := 0
	for _, mf := range mfs {
		n += len(mf.GetMetric())
	}
	if err != nil || n != 3 {
		t.Fatalf("metrics: %d series, %v", n, err)
	}
}
