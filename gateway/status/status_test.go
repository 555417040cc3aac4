package status

import (
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"callgate/crm/outbox"
	"callgate/gateway/config"
	"callgate/gateway/directory"
	"callgate/gateway/recordings"
	"callgate/gateway/storehealth"
	"callgate/media/relay"
	"callgate/sip/b2bua"
	"callgate/sip/digest"
	"callgate/sip/guard"
	"callgate/sip/location"
	"callgate/sip/registrar"
	"callgate/sip/sipnet"

	"github.com/prometheus/client_golang/prometheus"
)

type queues map[string]outbox.Status

func (q queues) Queues() map[string]outbox.Status { return q }
func (q queues) RetryDead(string) (int, error)    { return 0, nil }

func directoryOf(t *testing.T) *directory.Directory {
	cfg := config.Defaults()
	cfg.Employees = []config.Employee{{ID: "ivanov", Name: "Иван", Extensions: []string{"101", "102"}, SIPPassword: "x"}}
	return directory.New(&cfg)
}

func bind(t *testing.T, loc *location.Table, aor, src string, tr sipnet.Transport) {
	t.Helper()
	now := time.Now()
	_, err := loc.Modify(aor, now, func([]location.Binding) ([]location.Binding, error) {
		return []location.Binding{{AOR: aor, Contact: "sip:" + aor + "@" + src, Source: src, Transport: tr, Expires: now.Add(time.Hour), Since: now}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The admin page lists registered devices by extension with their
// employee and transport, and shows empty lists, never null, for a fresh
// callgate without upstream accounts or bans.
func TestAdminView(t *testing.T) {
	loc := location.New()
	bind(t, loc, "201", "192.168.1.21:5060", sipnet.UDP)
	bind(t, loc, "101", "192.168.1.11:5062", sipnet.TCP)
	g := guard.New(guard.Config{MaxFailures: 1, MaxFailuresPerIP: 10, Window: time.Minute, BanTime: time.Minute, Log: slog.New(slog.DiscardHandler)})
	a := &Admin{Location: loc, Directory: directoryOf(t), CRM: queues{"retailcrm": {Depth: 2}}, Guard: g,
		Recordings: recordings.New(recordings.Config{Dir: t.TempDir()}), Store: &storehealth.Health{Dir: t.TempDir()}}
	v := a.AdminView()
	if len(v.Phones) != 2 || v.Phones[0].Extension != "101" || v.Phones[0].Employee != "ivanov" || v.Phones[0].Transport != "tcp" ||
		v.Phones[1].Extension != "201" || v.Phones[1].Employee != "" || v.Phones[1].Transport != "udp" {
		t.Fatalf("phones %+v", v.Phones)
	}
	if v.CRM["retailcrm"].Depth != 2 {
		t.Fatalf("crm %+v", v.CRM)
	}
	b, _ := json.Marshal(v)
	for _, want := range []string{`"upstream":[]`, `"bans":[]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s missing in %s", want, b)
		}
	}

	src := netip.MustParseAddrPort("192.0.2.7:5060")
	g.Failure(src, "101", "wrong_password")
	if bans := a.AdminView().Bans; len(bans) == 0 {
		t.Fatal("a ban in force is not on the admin page")
	}
	if !a.Unban(src.String()) {
		t.Fatal("Unban did not lift the source's ban")
	}
	if a.Unban(src.String()) {
		t.Fatal("Unban of a source without a ban reported one")
	}
}

// The metrics read the parts when scraped: a registration shows at once,
// the parts' own collectors are registered beside them, and the upstream
// metric exists only with a trunk.
func TestRegistryReadsTheParts(t *testing.T) {
	loc := location.New()
	g := guard.New(guard.Config{MaxFailures: 5, MaxFailuresPerIP: 50, Window: time.Minute, BanTime: time.Minute})
	reg := registrar.New(registrar.Config{}, digest.NewServer("callgate", []digest.Algorithm{"MD5"}, time.Minute), directoryOf(t), g, loc)
	rel, err := relay.New(relay.Config{Bind: netip.MustParseAddr("127.0.0.1"), PortMin: 18000, PortMax: 18099, Timeout: time.Minute, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer rel.Close()
	b2b := b2bua.New(b2bua.Config{}, nil, nil, loc, nil, nil, nil, slog.New(slog.DiscardHandler))
	extra := prometheus.NewCounter(prometheus.CounterOpts{Name: "callgate_test_part_total", Help: "A part's own metric."})
	r := Registry(Parts{Registrar: reg, Bindings: location.NewPersister(loc, nil, slog.New(slog.DiscardHandler)), Guard: g, B2BUA: b2b, Relay: rel,
		Panics: func() uint64 { return 3 }, Collectors: []prometheus.Collector{extra}})
	bind(t, loc, "101", "192.168.1.11:5060", sipnet.UDP)
	reg.Stats.Registers.Add(2)
	reg.Stats.FastPath.Add(4)
	sess, err := rel.Open("call-1")
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	for name, want := range map[string]float64{"callgate_registered_contacts": 1, "callgate_sip_register_total": 2, "callgate_panics_total": 3,
		"callgate_sip_register_fast_total": 4,
		"callgate_calls_active":            0, "callgate_test_part_total": 0} {
		if got := value(t, r, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	mfs, err := r.Gather()
	if err != nil {
		t.Fatal(err)
	}
	loops := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "callgate_upstream_registered" {
			t.Errorf("upstream metric without a trunk: %v", mf)
		}
		if mf.GetName() == "callgate_relay_loop_sessions" {
			for _, m := range mf.GetMetric() {
				loops[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	if len(loops) != 2 || loops["0"] != 1 || loops["1"] != 0 {
		t.Errorf("sessions per relay loop %v, want the call on loop 0 of 2", loops)
	}
}

func value(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
