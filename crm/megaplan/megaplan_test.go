package megaplan

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"callgate/crm"
	"callgate/crm/crmtest"
	"callgate/crm/outbox"

	bolt "go.etcd.io/bbolt"
)

func newConnector(st *crmtest.Megaplan, rps float64) *Connector {
	return New(Config{URL: st.URL, Username: "api@office", Password: "s3cret-pass", RPS: rps, Programs: map[string]int{"sales1": 12}}, nil)
}

// withStandIn is a stand-in without a rate limit, closed with the test, and
// a connector to it allowed 100 requests a second.
func withStandIn(t *testing.T) (*crmtest.Megaplan, *Connector) {
	st := crmtest.NewMegaplan("api@office", "s3cret-pass", 0)
	t.Cleanup(st.Close)
	return st, newConnector(st, 100)
}

var t0 = time.Now().Add(-time.Minute).UTC().Truncate(time.Second)

var (
	ivanov = crm.Person{Employee: "ivanov", Extension: "101", CRMUser: 1000007}
	petrov = crm.Person{Employee: "petrov", Extension: "103", CRMUser: 1000009}
)

func answered(id string) crm.Call {
	return crm.Call{ID: id, Direction: "inbound", Outside: "+79161234567", TrunkNumber: "+74951234567", Account: "sales1",
		Rung: []crm.Person{ivanov}, AnsweredBy: "ivanov", Started: t0, Answered: t0.Add(5 * time.Second), Ended: t0.Add(65 * time.Second),
		WaitSeconds: 5, TalkSeconds: 60, Result: "answered", Autocreate: "none",
		Legs: []crm.Leg{{N: 1, Person: ivanov, Answered: t0.Add(5 * time.Second), Ended: t0.Add(65 * time.Second), TalkSeconds: 60,
			RecordURL: "https://callgate.example.ru/api/v1/recordings/" + id + "-1?sig=ab"}}}
}

// run turns the events into items and delivers them in order.
func run(t *testing.T, c *Connector, call crm.Call, kinds ...string) {
	t.Helper()
	for _, k := range kinds {
		for _, it := range c.Items(crm.Event{Kind: k, Call: call}) {
			it.Created = time.Now()
			if err := c.Deliver(context.Background(), &it); err != nil {
				t.Fatalf("%s %s: %v", k, it.Kind, err)
			}
		}
	}
}

func TestAnsweredCallPopupUpdatesAndRecording(t *testing.T) {
	st, c := withStandIn(t)
	run(t, c, answered("c1"), crm.Ringing, crm.Answered, crm.Ended)
	calls := st.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d calls: %+v", len(calls), calls)
	}
	ci := calls[0]
	if ci.ProviderID != "c1" || ci.Type != "in" || ci.FromPhone != "+79161234567" || ci.ToPhone != "+74951234567" ||
		ci.ToUser == nil || ci.ToUser.ID != "1000007" || ci.ToUser.ContentType != "Employee" ||
		!slices.Equal(ci.States, []string{"calling", "talking", "finished"}) || ci.Popups != 3 ||
		ci.TimeTo == nil || len(ci.RecordLinks) != 1 || !strings.Contains(ci.RecordLinks[0], "c1-1") {
		t.Fatalf("call %+v", ci)
	}
	if g := st.Grants(); g["password"] != 1 {
		t.Fatalf("grants %v: one token should serve every request", g)
	}
}

func TestMissedTransferredAndUnmapped(t *testing.T) {
	st, c := withStandIn(t)

	missed := answered("m1")
	missed.Legs, missed.Result, missed.AnsweredBy, missed.TalkSeconds = nil, "no-answer", "", 0
	run(t, c, missed, crm.Ringing, crm.Ended)

	tr := answered("t1")
	tr.Legs[0].Ended = t0.Add(20 * time.Second)
	tr.Legs = append(tr.Legs, crm.Leg{N: 2, Person: petrov, Answered: t0.Add(20 * time.Second), Ended: t0.Add(65 * time.Second),
		TalkSeconds: 45, TransferredFrom: "ivanov", RecordURL: "https://callgate.example.ru/api/v1/recordings/t1-2?sig=cd"})
	run(t, c, tr, crm.Ringing, crm.Answered, crm.Transferred, crm.Ended)

	unmapped := answered("u1")
	unmapped.Rung = []crm.Person{{Employee: "ghost", Extension: "199"}}
	unmapped.Legs[0].Person = unmapped.Rung[0]
	if items := slices.Concat(c.Items(crm.Event{Kind: crm.Ringing, Call: unmapped}), c.Items(crm.Event{Kind: crm.Ended, Call: unmapped})); len(items) != 0 {
		t.Fatalf("unmapped employee's call queued: %+v", items)
	}

	byPID := map[string]crmtest.MegaplanCall{}
	for _, ci := range st.Calls() {
		byPID[ci.ProviderID] = ci
	}
	if len(byPID) != 3 {
		t.Fatalf("calls %+v", byPID)
	}
	if m := byPID["m1"]; m.Type != "miss" || m.State != "finished" || m.ToUser.ID != "1000007" || len(m.RecordLinks) != 0 {
		t.Fatalf("missed %+v", m)
	}
	l1, l2 := byPID["t1"], byPID["t1-2"]
	if l1.ToUser.ID != "1000007" || l2.ToUser.ID != "1000009" || l1.State != "finished" || l2.State != "finished" ||
		!strings.Contains(l1.RecordLinks[0], "t1-1") || !strings.Contains(l2.RecordLinks[0], "t1-2") || l2.TimeFrom.Value == l1.TimeFrom.Value {
		t.Fatalf("legs %+v / %+v", l1, l2)
	}
}

// Operations delivered after their moment (a backlog after an outage) do
// not pop up: the finished call goes in through callInfo/history.
func TestBacklogGoesToHistoryWithoutPopups(t *testing.T) {
	st, c := withStandIn(t)
	call := answered("b1")
	for _, k := range []string{crm.Ringing, crm.Answered, crm.Ended} {
		for _, it := range c.Items(crm.Event{Kind: k, Call: call}) {
			it.Created = time.Now().Add(-time.Hour)
			if err := c.Deliver(context.Background(), &it); err != nil {
				t.Fatal(err)
			}
		}
	}
	calls := st.Calls()
	if len(calls) != 1 || calls[0].Popups != 0 || calls[0].State != "finished" || len(calls[0].RecordLinks) != 1 {
		t.Fatalf("calls %+v", calls)
	}
}

func TestDroppedAnswersDoNotDuplicate(t *testing.T) {
	st, c := withStandIn(t)
	call := answered("d1")
	var tmp *outbox.Temporary
	for _, k := range []string{crm.Ringing, crm.Ended} {
		for _, it := range c.Items(crm.Event{Kind: k, Call: call}) {
			it.Created = time.Now()
			st.SetMode(crmtest.DropResponse)
			err := c.Deliver(context.Background(), &it)
			st.SetMode(crmtest.Normal)
			if it.Kind != "client" && !errors.As(err, &tmp) {
				t.Fatalf("%s with a dropped answer: %v", it.Kind, err)
			}
			if err := c.Deliver(context.Background(), &it); err != nil {
				t.Fatal(err)
			}
		}
	}
	if calls := st.Calls(); len(calls) != 1 || calls[0].State != "finished" {
		t.Fatalf("calls %+v", calls)
	}
}

func TestTokenRenewedBeforeExpiryAndOn401(t *testing.T) {
	st := crmtest.NewMegaplan("api@office", "s3cret-pass", 0)
	defer st.Close()
	st.SetTokenTTL(time.Second)
	c := newConnector(st, 100)
	run(t, c, answered("k1"), crm.Ringing)
	time.Sleep(1100 * time.Millisecond) // past 90% of the token's life
	run(t, c, answered("k1"), crm.Answered)
	if g, u := st.Grants(), st.Unauthorized(); g["refresh_token"] != 1 || u != 0 {
		t.Fatalf("grants %v, %d refused: the token should be renewed before it expires", g, u)
	}
	st.SetTokenTTL(48 * time.Hour)
	run(t, c, answered("k2"), crm.Ringing)
	st.ExpireTokens() // mid-run, earlier than promised
	run(t, c, answered("k2"), crm.Answered, crm.Ended)
	if u := st.Unauthorized(); u != 1 {
		t.Fatalf("%d requests refused, want the one that found the token expired", u)
	}
	for _, ci := range st.Calls() {
		if ci.ProviderID == "k2" && ci.State != "finished" {
			t.Fatalf("k2 %+v", ci)
		}
	}
	bad := New(Config{URL: st.URL, Username: "api@office", Password: "wrong"}, nil)
	it := bad.Items(crm.Event{Kind: crm.Ringing, Call: answered("k3")})[0]
	it.Created = time.Now()
	var tmp *outbox.Temporary
	if err := bad.Deliver(context.Background(), &it); !errors.As(err, &tmp) || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("wrong password: %v (items must wait for a fixed configuration)", err)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	st, c := withStandIn(t)
	it := c.Items(crm.Event{Kind: crm.Ringing, Call: answered("e1")})[0]
	it.Created = time.Now()
	var tmp *outbox.Temporary
	var perm *outbox.Permanent
	st.SetMode(crmtest.Busy503)
	if err := c.Deliver(context.Background(), &it); !errors.As(err, &tmp) || tmp.After != time.Second {
		t.Fatalf("503: %v", err)
	}
	st.SetMode(crmtest.Down)
	if err := c.Deliver(context.Background(), &it); !errors.As(err, &tmp) {
		t.Fatalf("down: %v", err)
	}
	st.SetMode(crmtest.Normal)

	// A client faster than the account allows gets 429 with Retry-After,
	// which the outbox honours.
	strict := crmtest.NewMegaplan("api@office", "s3cret-pass", 1)
	defer strict.Close()
	fast := newConnector(strict, 1000)
	if err := fast.Deliver(context.Background(), &it); !errors.As(err, &tmp) || tmp.After != time.Second || !strings.Contains(err.Error(), "429") {
		t.Fatalf("429: %v", err)
	}

	bad := it
	bad.Body = []byte(`{"op":"popup","call":{"contentType":"CallInfo","type":"sideways","state":"calling","providerId":"e1"}}`)
	if err := c.Deliver(context.Background(), &bad); !errors.As(err, &perm) || !strings.Contains(err.Error(), "unknown value sideways") {
		t.Fatalf("validation: %v", err)
	}
}

// Per trunk: nothing, a client, or a client and a deal in the trunk's
// scheme, made by the employee who took the call. Megaplan checks the
// rights of the API user: a scheme it may not create deals in leaves the
// deal out and the call still linked to its new client; without the right
// to create clients the refusal is permanent while the call itself is logged.
func TestAutocreateRules(t *testing.T) {
	st, c := withStandIn(t)
	none := answered("n1")
	run(t, c, none, crm.Ringing, crm.Ended)
	if len(st.Contractors()) != 0 {
		t.Fatal("autocreate none created a client")
	}
	deal := answered("a1")
	deal.Autocreate = "contact+deal"
	run(t, c, deal, crm.Ringing, crm.Ended)
	run(t, c, deal, crm.Ended) // again, as after a lost answer
	ks, ds := st.Contractors(), st.Deals()
	if len(ks) != 1 || ks[0].Responsibles[0].ID != "1000007" || ks[0].ContactInfo[0].Value != "+79161234567" {
		t.Fatalf("clients %+v", ks)
	}
	if len(ds) != 1 || ds[0].Program.ID != "12" || ds[0].Manager.ID != "1000007" || ds[0].Contractor.ID != ks[0].ID {
		t.Fatalf("deals %+v", ds)
	}
	for _, ci := range st.Calls() {
		if ci.ProviderID == "a1" && (ci.FromUser == nil || ci.FromUser.ID != ks[0].ID) {
			t.Fatalf("call not linked to the new client: %+v", ci)
		}
	}
	// The new client's next calls are linked to them and create nothing.
	for _, id := range []string{"a2", "a3"} {
		again := answered(id)
		again.Autocreate = "contact+deal"
		run(t, c, again, crm.Ringing, crm.Ended)
	}
	if len(st.Contractors()) != 1 || len(st.Deals()) != 1 {
		t.Fatalf("the new client's next calls made %d clients, %d deals", len(st.Contractors()), len(st.Deals()))
	}

	st.DenyDeals("12")
	nodeal := answered("d1")
	nodeal.Outside, nodeal.Autocreate = "+79160000002", "contact+deal"
	run(t, c, nodeal, crm.Ringing, crm.Ended)
	if len(st.Deals()) != 1 {
		t.Fatalf("a deal in a scheme the API user may not use: %+v", st.Deals())
	}
	var made string
	for _, k := range st.Contractors() {
		if k.ContactInfo[0].Value == nodeal.Outside {
			made = k.ID
		}
	}
	linked := false
	for _, ci := range st.Calls() {
		linked = linked || ci.ProviderID == "d1" && ci.FromUser != nil && made != "" && ci.FromUser.ID == made
	}
	if !linked {
		t.Fatalf("refused deal: the call is not linked to its new client %q: %+v", made, st.Calls())
	}

	st.DenyClients(true)
	denied := answered("x1")
	denied.Outside, denied.Autocreate = "+79160000001", "contact"
	denied.Rung, denied.Legs[0].Person = []crm.Person{petrov}, petrov
	var perm *outbox.Permanent
	for _, it := range slices.Concat(c.Items(crm.Event{Kind: crm.Ringing, Call: denied}), c.Items(crm.Event{Kind: crm.Ended, Call: denied})) {
		it.Created = time.Now()
		err := c.Deliver(context.Background(), &it)
		if it.Kind == "client" {
			if !errors.As(err, &perm) || !strings.Contains(err.Error(), "Access denied") {
				t.Fatalf("refusal: %v", err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
	}
	for _, ci := range st.Calls() {
		if ci.ProviderID == "x1" && ci.State != "finished" {
			t.Fatalf("refused client, call not logged: %+v", ci)
		}
	}
}

func TestResponsibleFromCallRoute(t *testing.T) {
	st, c := withStandIn(t)
	st.SetRoute("+79161234567", "1000009")
	if who, err := c.Responsible(context.Background(), "+79161234567"); err != nil || who != "1000009" {
		t.Fatalf("known client: %q %v", who, err)
	}
	if who, err := c.Responsible(context.Background(), "+79160000000"); err != nil || who != "" {
		t.Fatalf("unknown client: %q %v", who, err)
	}
	if v := st.Violations(); len(v) > 0 {
		t.Fatalf("callRoute asked out of the documented form: %v", v)
	}
	st.SetMode(crmtest.Fail500)
	if _, err := c.Responsible(context.Background(), "+79161234567"); err == nil {
		t.Fatal("a failing CRM must say so")
	}
}

// Three calls from a number nobody knew; then a manager creates the client
// in Megaplan: the watcher finds them and the three calls are attached.
func TestClientCreatedLaterGetsEarlierCalls(t *testing.T) {
	st, c := withStandIn(t)
	db, err := bolt.Open(filepath.Join(t.TempDir(), "o.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ob, err := outbox.Open(db, "megaplan", c, outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.AddContractor("Old client", "+79990000000") // before the first look: left alone
	var ids []string
	for i := range 3 {
		call := answered(fmt.Sprint("later", i))
		run(t, c, call, crm.Ringing, crm.Answered, crm.Ended)
		ids = append(ids, call.ID)
	}
	var seen time.Time
	w := Watch{Every: time.Hour, Seen: func() time.Time { return seen }, Save: func(t time.Time) error { seen = t; return nil },
		Calls: func(phone string, since time.Time) []string {
			// Megaplan keeps numbers as people typed them.
			if strings.NewReplacer(" ", "", "-", "").Replace(phone) != "+79161234567" || since.After(t0) {
				return nil
			}
			return ids
		},
		Put: ob.Put}
	if err := c.pollClients(context.Background(), w); err != nil || seen.IsZero() || ob.Status().Depth != 0 {
		t.Fatalf("first look: %v, mark %v, %d queued", err, seen, ob.Status().Depth)
	}
	id := st.AddContractor("Новый клиент", "+7 916 123-45-67")
	if err := c.pollClients(context.Background(), w); err != nil || ob.Status().Depth != 1 {
		t.Fatalf("second look: %v, %d queued", err, ob.Status().Depth)
	}
	if err := c.pollClients(context.Background(), w); err != nil || ob.Status().Depth != 1 {
		t.Fatalf("a third look queued again: %v, %d", err, ob.Status().Depth)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ob.Run(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for ob.Status().Depth > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	linked := 0
	for _, ci := range st.Calls() {
		if ci.FromUser != nil && ci.FromUser.ID == id {
			linked++
		}
	}
	if linked != 3 {
		t.Fatalf("%d of 3 calls attached to the new client (%+v)", linked, ob.Status())
	}
}

// A burst of 1,000 queued popups stays within the configured rate.
func TestBurstStaysWithinRateLimit(t *testing.T) {
	t.Parallel()
	st := crmtest.NewMegaplan("api@office", "s3cret-pass", 200)
	defer st.Close()
	c := newConnector(st, 200)
	db, err := bolt.Open(filepath.Join(t.TempDir(), "o.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ob, _ := outbox.Open(db, "megaplan", c, outbox.Options{})
	var items []outbox.Item
	for i := range 1000 {
		items = append(items, c.Items(crm.Event{Kind: crm.Ringing, Call: answered(fmt.Sprint("burst", i))})...)
	}
	if err := ob.Put(items...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ob.Run(ctx)
	deadline := time.Now().Add(60 * time.Second)
	for ob.Status().Depth > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if v := st.Violations(); len(v) > 0 {
		t.Fatalf("rate limit exceeded %d times: %v", len(v), v[:min(3, len(v))])
	}
	if n := len(st.Calls()); n != 1000 {
		t.Fatalf("%d of 1000 delivered", n)
	}
}

// BenchmarkThroughput delivers b.N queued popups (each a look-up by
// providerId and a POST callInfo) to a stand-in with no rate limit:
// go test -run '^$' -bench Throughput -benchtime 5000x ./crm/megaplan
func BenchmarkThroughput(b *testing.B) {
	st := crmtest.NewMegaplan("api@office", "s3cret-pass", 0)
	defer st.Close()
	c := newConnector(st, 1e6)
	db, err := bolt.Open(filepath.Join(b.TempDir(), "o.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ob, _ := outbox.Open(db, "megaplan", c, outbox.Options{})
	var items []outbox.Item
	for i := range b.N {
		items = append(items, c.Items(crm.Event{Kind: crm.Ringing, Call: answered(fmt.Sprint("tp", i))})...)
	}
	_ = ob.Put(items...)
	b.ResetTimer()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ob.Run(ctx)
	for ob.Status().Depth > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
	if n := len(st.Calls()); n != b.N {
		b.Fatalf("%d of %d delivered", n, b.N)
	}
}

// Auto-create is for new clients calling in: three calls from a known
// contractor create no deal and are linked to them; an outbound call to an
// unknown number creates no client.
func TestAutocreateOnlyForNewCallers(t *testing.T) {
	st, c := withStandIn(t)
	known := st.AddContractor("Анна Смирнова", "+79161234567")
	for _, id := range []string{"k1", "k2", "k3"} {
		call := answered(id)
		call.Autocreate = "contact+deal"
		run(t, c, call, crm.Ringing, crm.Ended)
	}
	out := answered("o1")
	out.Direction, out.Outside, out.Autocreate = "outbound", "+79169990000", "contact+deal"
	run(t, c, out, crm.Ringing, crm.Ended)
	if ks, ds := st.Contractors(), st.Deals(); len(ks) != 1 || len(ds) != 0 {
		t.Fatalf("clients %+v, deals %+v; want only Анна Смирнова and no deal", ks, ds)
	}
	linked := 0
	for _, ci := range st.Calls() {
		if ci.FromUser != nil && ci.FromUser.ID == known {
			linked++
		}
	}
	if linked != 3 {
		t.Fatalf("%d of the known client's 3 calls linked to them", linked)
	}
}

// The client's card: name and link, the company the client works for, and
// the client's open deals with links (closed deals and other clients'
// deals left out).
func TestClientCardWithCompanyAndOpenDeals(t *testing.T) {
	st, c := withStandIn(t)
	anna := st.AddContractor("Анна", "+79161234567")
	st.SetCompany(anna, "ООО «Ромашка»")
	open := st.AddDeal(anna, "Поставка кофемашин", "active")
	st.AddDeal(anna, "Старый заказ", "positive")
	st.AddDeal(anna, "Отказ", "negative")
	st.AddDeal(st.AddContractor("Олег", "+79160000009"), "Чужая сделка", "active")
	cl, err := c.Client(context.Background(), "+79161234567")
	if err != nil || cl == nil {
		t.Fatalf("card: %+v, %v", cl, err)
	}
	if cl.Name != "Анна" || cl.Company != "ООО «Ромашка»" || cl.URL != st.URL+"/crm/human/"+anna+"/card/" {
		t.Errorf("card %+v", cl)
	}
	if len(cl.Deals) != 1 || cl.Deals[0].Title != "Поставка кофемашин" || cl.Deals[0].URL != st.URL+"/deals/"+open+"/card/" {
		t.Errorf("deals on the card: %+v, want only the open one", cl.Deals)
	}
	if oleg, err := c.Client(context.Background(), "+79160000009"); err != nil || oleg.Company != "" || len(oleg.Deals) != 1 {
		t.Errorf("a client without a company: %+v, %v", oleg, err)
	}
	if v := st.Violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
}
