package crmlink

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"callgate/crm"
	"callgate/crm/outbox"
	"callgate/gateway/calls"
	"callgate/gateway/config"
	"callgate/gateway/directory"
	"callgate/gateway/recordings"
	"callgate/gateway/store"
	"callgate/sip/b2bua"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeDir knows ivanov (101, 102) and petrov (103).
type fakeDir map[string]*directory.Employee

func (d fakeDir) Employee(id string) (*directory.Employee, bool) { e, ok := d[id]; return e, ok }

func (d fakeDir) ByExtension(ext string) (*directory.Employee, bool) {
	for _, e := range d {
		if slices.Contains(e.Extensions, ext) {
			return e, true
		}
	}
	return nil, false
}

var office = fakeDir{
	"ivanov": {ID: "ivanov", Extensions: []string{"101", "102"}},
	"petrov": {ID: "petrov", Extensions: []string{"103"}},
}

// fakeConn is a connector that makes one item per event and keeps what
// the outbox delivered.
type fakeConn struct {
	name string
	mu   sync.Mutex
	got  []string // item keys, in delivery order
}

func (c *fakeConn) Name() string { return c.name }

func (c *fakeConn) Items(e crm.Event) []outbox.Item {
	body, _ := json.Marshal(e.Call)
	return []outbox.Item{{Key: e.Call.ID + "-" + e.Kind, Call: e.Call.ID, Kind: e.Kind, Body: body}}
}

func (c *fakeConn) Deliver(_ context.Context, it *outbox.Item) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, it.Key)
	return nil
}

func (c *fakeConn) delivered() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

var enabled = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

// twoCRMs: "retail" maps ivanov to 7 and petrov to 9; "plan" maps ivanov
// to 1007, excludes petrov (mapped to 1009) and was enabled a day later.
func twoCRMs() *Link {
	return &Link{deps: Deps{Directory: office},
		trunks: map[string]config.Account{
			"sales1":  {User: "sales1", Autocreate: "contact+deal"},
			"private": {User: "private", CRMExclude: true},
			"support": {User: "support"},
		},
		crms: []*connector{
			{conn: &fakeConn{name: "retail"}, since: enabled, users: map[string]int{"ivanov": 7, "petrov": 9}, exclude: map[string]bool{}},
			{conn: &fakeConn{name: "plan"}, since: enabled.Add(24 * time.Hour), users: map[string]int{"ivanov": 1007, "petrov": 1009}, exclude: map[string]bool{"petrov": true}},
		}}
}

// transferredCall is an inbound call on sales1 that ivanov answered on his
// second line and transferred to petrov.
func transferredCall(started time.Time) *calls.Record {
	return &calls.Record{ID: "c1", Direction: "inbound", Account: "sales1", Outside: "+79161234567", Started: started,
		Rung: []string{"ivanov", "petrov"}, AnsweredBy: "ivanov", Result: "answered",
		Legs: []calls.Leg{
			{N: 1, Employee: "ivanov", Extension: "102", Recording: "2025/03/c1-1.wav"},
			{N: 2, Employee: "petrov", Extension: "103", TransferredFrom: "ivanov"},
		}}
}

// person is how a test names a crm.Person: employee/extension/user.
func person(p crm.Person) string { return fmt.Sprintf("%s/%s/%d", p.Employee, p.Extension, p.CRMUser) }

// The rules between a call event and the CRMs: which CRMs get it, under
// which kind, and whom it names to each.
func TestOperationsRules(t *testing.T) {
	after := enabled.Add(48 * time.Hour) // both enabled by then
	between := enabled.Add(time.Hour)    // retail enabled, plan not yet
	internal := transferredCall(after)
	internal.Internal, internal.Direction, internal.Account = true, "internal", ""
	excludedTrunk := transferredCall(after)
	excludedTrunk.Account = "private"
	unknownTrunk := transferredCall(after)
	unknownTrunk.Account = "support"
	for _, tc := range []struct {
		name string
		kind b2bua.EventKind
		rec  *calls.Record
		// want is, per CRM that gets the event: kind; rung; legs.
		want map[string]string
	}{
		{name: "both CRMs, each with its own users; excluded employee as if unmapped", kind: b2bua.EventEnded, rec: transferredCall(after),
			want: map[string]string{
				"retail": "ended; ivanov/101/7 petrov/103/9; ivanov/101/7 petrov/103/9",
				"plan":   "ended; ivanov/101/1007 petrov/103/0; ivanov/101/1007 petrov/103/0",
			}},
		{name: "ringing", kind: b2bua.EventRinging, rec: transferredCall(after), want: map[string]string{
			"retail": "ringing; ivanov/101/7 petrov/103/9; ivanov/101/7 petrov/103/9",
			"plan":   "ringing; ivanov/101/1007 petrov/103/0; ivanov/101/1007 petrov/103/0",
		}},
		{name: "answered", kind: b2bua.EventAnswered, rec: transferredCall(after), want: map[string]string{
			"retail": "answered; ivanov/101/7 petrov/103/9; ivanov/101/7 petrov/103/9",
			"plan":   "answered; ivanov/101/1007 petrov/103/0; ivanov/101/1007 petrov/103/0",
		}},
		{name: "transferred", kind: b2bua.EventTransferred, rec: transferredCall(after), want: map[string]string{
			"retail": "transferred; ivanov/101/7 petrov/103/9; ivanov/101/7 petrov/103/9",
			"plan":   "transferred; ivanov/101/1007 petrov/103/0; ivanov/101/1007 petrov/103/0",
		}},
		{name: "started before one CRM was enabled: only the other", kind: b2bua.EventEnded, rec: transferredCall(between), want: map[string]string{
			"retail": "ended; ivanov/101/7 petrov/103/9; ivanov/101/7 petrov/103/9",
		}},
		{name: "started before both were enabled: none", kind: b2bua.EventEnded, rec: transferredCall(enabled.Add(-time.Second)), want: map[string]string{}},
		{name: "internal: none", kind: b2bua.EventEnded, rec: internal, want: map[string]string{}},
		{name: "trunk excluded from CRMs: none", kind: b2bua.EventRinging, rec: excludedTrunk, want: map[string]string{}},
		{name: "another trunk: both", kind: b2bua.EventRinging, rec: unknownTrunk, want: map[string]string{
			"retail": "ringing; ivanov/101/7 petrov/103/9; ivanov/101/7 petrov/103/9",
			"plan":   "ringing; ivanov/101/1007 petrov/103/0; ivanov/101/1007 petrov/103/0",
		}},
		{name: "an unknown kind: none", kind: "parked", rec: transferredCall(after), want: map[string]string{}},
		{name: "unmapped employee and unknown extension", kind: b2bua.EventEnded,
			rec: &calls.Record{ID: "c2", Direction: "inbound", Account: "sales1", Started: after, Rung: []string{"sidorov"},
				Legs: []calls.Leg{{N: 1, Employee: "sidorov", Extension: "109"}}},
			want: map[string]string{"retail": "ended; sidorov//0; sidorov/109/0", "plan": "ended; sidorov//0; sidorov/109/0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := twoCRMs()
			got := map[string]string{}
			for _, op := range l.operations(calls.Event{Kind: tc.kind, Record: tc.rec}) {
				var rung, legs []string
				for _, p := range op.event.Call.Rung {
					rung = append(rung, person(p))
				}
				for _, leg := range op.event.Call.Legs {
					legs = append(legs, person(leg.Person))
				}
				got[op.to.conn.Name()] = op.event.Kind + "; " + strings.Join(rung, " ") + "; " + strings.Join(legs, " ")
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("%s got %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// The call as connectors see it: the record's facts, the trunk's
// autocreate rule ("none" by default), a signed link for each recorded leg
// when the API runs and none without it.
func TestOperationsCall(t *testing.T) {
	at := enabled.Add(48 * time.Hour)
	for _, tc := range []struct {
		name       string
		account    string
		links      *recordings.Links
		autocreate string
		link       bool
	}{
		{"with the API", "sales1", &recordings.Links{Key: []byte("0123456789abcdef0123456789abcdef"), TTL: time.Hour, BaseURL: "https://callgate.example.ru"}, "contact+deal", true},
		{"without the API", "support", nil, "none", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := twoCRMs()
			if tc.links != nil {
				l.deps.Links = tc.links
			}
			r := transferredCall(at)
			r.Account = tc.account
			ops := l.operations(calls.Event{Kind: b2bua.EventEnded, Record: r})
			if len(ops) != 2 {
				t.Fatalf("%d operations", len(ops))
			}
			for _, op := range ops {
				c := op.event.Call
				if c.ID != "c1" || c.Direction != "inbound" || c.Outside != "+79161234567" || c.AnsweredBy != "ivanov" || c.Result != "answered" ||
					c.Autocreate != tc.autocreate || !c.Started.Equal(at) || len(c.Legs) != 2 || c.Legs[1].TransferredFrom != "ivanov" {
					t.Fatalf("%s call %+v", op.to.conn.Name(), c)
				}
				if got := c.Legs[0].RecordURL != ""; got != tc.link || c.Legs[1].RecordURL != "" {
					t.Fatalf("%s recording links %q %q", op.to.conn.Name(), c.Legs[0].RecordURL, c.Legs[1].RecordURL)
				}
				if tc.link && !strings.HasPrefix(c.Legs[0].RecordURL, "https://callgate.example.ru/api/v1/recordings/c1-1") {
					t.Fatalf("link %q", c.Legs[0].RecordURL)
				}
			}
			// Each CRM names the people its own way without touching the
			// other's.
			if ops[0].event.Call.Legs[0].Person.CRMUser != 7 || ops[1].event.Call.Legs[0].Person.CRMUser != 1007 {
				t.Fatalf("legs share people: %+v / %+v", ops[0].event.Call.Legs, ops[1].event.Call.Legs)
			}
		})
	}
}

// Call events published on the bus reach every CRM's outbox and are
// delivered, but those a rule keeps out; Stop queues what was published
// before it. The first time a CRM was enabled survives a restart.
func TestLinkDeliversThroughOutboxes(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	bus := calls.NewBus()
	open := func(name string) (*Link, *fakeConn) {
		l := &Link{deps: Deps{Store: db, Events: bus, Directory: office, Metrics: prometheus.NewRegistry()}, log: testLog(t),
			trunks: map[string]config.Account{"private": {User: "private", CRMExclude: true}}}
		c := &fakeConn{name: name}
		if err := l.add(&connector{conn: c, users: map[string]int{"ivanov": 7}}, time.Second, nil); err != nil {
			t.Fatal(err)
		}
		l.events, l.unsubscribe = bus.Subscribe(16)
		return l, c
	}
	l, conn := open("fake")
	since := l.crms[0].since
	if time.Since(since) > time.Minute {
		t.Fatalf("enabled at %v", since)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.Start(ctx)
	now := time.Now()
	bus.Publish(calls.Event{Kind: b2bua.EventRinging, Record: &calls.Record{ID: "in1", Direction: "inbound", Started: now}})
	bus.Publish(calls.Event{Kind: b2bua.EventRinging, Record: &calls.Record{ID: "int1", Internal: true, Started: now}})
	bus.Publish(calls.Event{Kind: b2bua.EventRinging, Record: &calls.Record{ID: "old1", Started: since.Add(-time.Second)}})
	bus.Publish(calls.Event{Kind: b2bua.EventRinging, Record: &calls.Record{ID: "priv1", Account: "private", Started: now}})
	bus.Publish(calls.Event{Kind: b2bua.EventEnded, Record: &calls.Record{ID: "in1", Direction: "inbound", Started: now}})
	for deadline := time.Now().Add(5 * time.Second); len(conn.delivered()) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("delivered %v", conn.delivered())
		}
	}
	cancel()
	l.Stop()
	if got := conn.delivered(); strings.Join(got, ",") != "in1-ringing,in1-ended" {
		t.Fatalf("delivered %v", got)
	}
	if st := l.Queues(); st["fake"].Depth != 0 {
		t.Fatalf("status %+v", st)
	}

	// Enabled again later: the first time stays.
	again, _ := open("fake")
	if !again.crms[0].since.Equal(since) {
		t.Fatalf("enabled at %v after a restart, first at %v", again.crms[0].since, since)
	}
	again.Stop()
}

// Status lists every CRM's outbox, or the one named; retrying dead letters
// needs an enabled CRM.
func TestStatus(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l := &Link{deps: Deps{Store: db, Metrics: prometheus.NewRegistry()}, log: testLog(t)}
	for _, name := range []string{"retailcrm", "megaplan"} {
		if err := l.add(&connector{conn: &fakeConn{name: name}}, time.Second, nil); err != nil {
			t.Fatal(err)
		}
	}
	if st := l.Queues(); len(st) != 2 {
		t.Fatalf("queues %v", st)
	}
	if n, err := l.RetryDead("megaplan"); err != nil || n != 0 {
		t.Fatalf("retry %d %v", n, err)
	}
	if _, err := l.RetryDead("amocrm"); err == nil {
		t.Fatal("retried dead letters of a CRM that is not enabled")
	}
	if len(l.Outboxes()) != 2 {
		t.Fatal("outboxes")
	}
}

// A CRM with send_recordings = false gets no recording links; the other
// still does, and the links CRMs get never expire (exp=0): they last as
// long as the recording.
func TestSendRecordingsPerCRM(t *testing.T) {
	l := twoCRMs()
	l.deps.Links = &recordings.Links{Key: []byte("0123456789abcdef0123456789abcdef"), TTL: time.Hour, BaseURL: "https://callgate.example.ru"}
	l.crms[1].noRecordings = true
	ops := l.operations(calls.Event{Kind: b2bua.EventEnded, Record: transferredCall(enabled.Add(48 * time.Hour))})
	if len(ops) != 2 {
		t.Fatalf("%d operations", len(ops))
	}
	got := map[string]string{}
	for _, op := range ops {
		got[op.to.conn.Name()] = op.event.Call.Legs[0].RecordURL
	}
	if u := got[ops[0].to.conn.Name()]; !strings.Contains(u, "exp=0&") {
		t.Fatalf("%s got %q, want a lasting link", ops[0].to.conn.Name(), u)
	}
	if u := got[ops[1].to.conn.Name()]; u != "" {
		t.Fatalf("%s (send_recordings = false) got a link %q", ops[1].to.conn.Name(), u)
	}
}
