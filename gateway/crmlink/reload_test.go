package crmlink

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"callgate/gateway/calls"
	"callgate/gateway/config"
	"callgate/gateway/store"
	"callgate/sip/b2bua"

	"github.com/prometheus/client_golang/prometheus"
)

// Reload changes whom the next event names to each CRM and which trunks
// reach them, forgets smart routing's cached answers, and registers
// RetailCRM's module again when extensions or trunk numbers changed.
func TestReloadMappings(t *testing.T) {
	var registrations atomic.Int32
	var module atomic.Value // the last module registered
	retail := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v5/integration-modules/callgate/edit" {
			module.Store(r.FormValue("integrationModule"))
			registrations.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"success": true}`))
	}))
	defer retail.Close()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := config.Defaults()
	cfg.Employees = []config.Employee{{ID: "ivanov", Extensions: []string{"101", "102"}, RetailCRMUser: 7}, {ID: "petrov", Extensions: []string{"103"}, RetailCRMUser: 9}}
	cfg.Upstream.Accounts = []config.Account{{User: "sales1"}, {User: "private", CRMExclude: true}}
	cfg.CRM.RetailCRM = config.RetailCRM{Enabled: true, URL: retail.URL, APIKey: "k", Site: "shop", ModuleCode: "callgate", TimeZone: config.ParseZone("UTC"), RetryMax: config.Duration(time.Second)}
	l, err := New(&cfg, Deps{Store: db, Calls: calls.NewStore(db), Events: calls.NewBus(), Directory: office, Metrics: prometheus.NewRegistry(), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	l.resp.cache["+79161234567"] = respEntry{employee: "petrov", at: time.Now()}
	people := func(account string) string {
		rec := transferredCall(time.Now())
		rec.Account = account
		ops := l.operations(calls.Event{Kind: b2bua.EventEnded, Record: rec})
		if len(ops) == 0 {
			return "none"
		}
		out := ""
		for _, p := range ops[0].event.Call.Rung {
			out += person(p) + " "
		}
		return out
	}
	if got := people("sales1"); got != "ivanov/101/7 petrov/103/9 " {
		t.Fatalf("before: %s", got)
	}
	if got := people("private"); got != "none" {
		t.Fatalf("before, the excluded trunk: %s", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.Start(ctx)
	waitFor(t, "the module registered at start", func() bool { return registrations.Load() == 1 })

	next := cfg
	next.Employees = []config.Employee{{ID: "ivanov", Extensions: []string{"101", "102"}, RetailCRMUser: 8}, {ID: "petrov", Extensions: []string{"103"}, RetailCRMUser: 9}}
	next.Upstream.Accounts = []config.Account{{User: "sales1"}, {User: "private"}}
	next.CRM.RetailCRM.Exclude = []string{"petrov"}
	l.Reload(&next)

	if got := people("sales1"); got != "ivanov/101/8 petrov/103/0 " {
		t.Fatalf("after: %s, want ivanov as user 8 and petrov excluded", got)
	}
	if got := people("private"); got == "none" {
		t.Fatal("the trunk no longer excluded is still kept out")
	}
	if l.retailUser(8) != "ivanov" || l.retailUser(7) != "" {
		t.Fatal("makeCallUrl's users were not replaced")
	}
	if len(l.resp.cache) != 0 {
		t.Fatal("smart routing kept an answer of the old mapping")
	}
	waitFor(t, "the module registered again", func() bool { return registrations.Load() == 2 })
	if m, _ := module.Load().(string); !strings.Contains(m, `{"code":"101","userId":8}`) {
		t.Fatalf("the module registered again without ivanov's new user: %s", m)
	}
	l.Reload(&next)
	time.Sleep(100 * time.Millisecond)
	cancel()
	l.Stop()
	if n := registrations.Load(); n != 2 {
		t.Fatalf("%d registrations: a reload without changes registered again", n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
