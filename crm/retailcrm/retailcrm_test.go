package retailcrm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"callgate/crm"
	"callgate/crm/crmtest"
	"callgate/crm/outbox"

	bolt "go.etcd.io/bbolt"
)

const key = "retail-api-key-0123456789"

func newConnector(t *testing.T, st *crmtest.RetailCRM) *Connector {
	t.Helper()
	msk, _ := time.LoadLocation("Europe/Moscow")
	return New(Config{URL: st.URL, APIKey: key, Site: "shop", ModuleCode: "callgate", Location: msk,
		PublicURL: "https://callgate.example.ru", ClientID: "client-123",
		Users: map[string]int{"101": 7, "103": 9}, ExternalPhones: []string{"+74951234567"}}, nil)
}

var t0 = time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)

func answered() crm.Call {
	iv := crm.Person{Employee: "ivanov", Extension: "101", CRMUser: 7}
	return crm.Call{ID: "c1", Direction: "inbound", Outside: "+79161234567", TrunkNumber: "+74951234567", Account: "sales1",
		Rung: []crm.Person{iv, {Employee: "ivanov", Extension: "102", CRMUser: 7}}, AnsweredBy: "ivanov",
		Started: t0, Answered: t0.Add(5 * time.Second), Ended: t0.Add(65 * time.Second), WaitSeconds: 5, TalkSeconds: 60, Result: "answered",
		Legs: []crm.Leg{{N: 1, Person: iv, Answered: t0.Add(5 * time.Second), Ended: t0.Add(65 * time.Second), TalkSeconds: 60, RecordURL: "https://callgate.example.ru/api/v1/recordings/c1-1?exp=1&sig=ab"}}}
}

func deliver(t *testing.T, c *Connector, items []outbox.Item) []error {
	t.Helper()
	var errs []error
	for i := range items {
		errs = append(errs, c.Deliver(context.Background(), &items[i]))
	}
	return errs
}

func TestAnsweredCallPopupsAndHistory(t *testing.T) {
	st := crmtest.NewRetailCRM(key)
	defer st.Close()
	c := newConnector(t, st)
	call := answered()
	items := append(c.Items(crm.Event{Kind: crm.Ringing, Call: call}), c.Items(crm.Event{Kind: crm.Ended, Call: call})...)
	if len(items) != 3 {
		t.Fatalf("%d items", len(items))
	}
	for _, err := range deliver(t, c, items) {
		if err != nil {
			t.Fatal(err)
		}
	}
	ev := st.Events()
	if len(ev) != 2 || ev[0].Type != "in" || ev[0].Phone != "79161234567" || ev[0].CallExternalID != "c1" || ev[0].UserIDs[0] != 7 ||
		ev[0].ExternalPhone != "+74951234567" || ev[1].Type != "hangup" || ev[1].HangupStatus != "answered" {
		t.Fatalf("events %+v", ev)
	}
	calls := st.Calls()
	if len(calls) != 1 {
		t.Fatalf("calls %+v", calls)
	}
	h := calls[0]
	if h.Date != "2026-11-22 10:00:05" || h.Type != "in" || h.Result != "answered" || h.Duration != 60 || h.DurationWaiting != 5 ||
		h.ExternalID != "c1-1" || h.UserID != 7 || h.Code != "101" || h.RecordURL == "" || h.Site != "shop" {
		t.Fatalf("history %+v", h)
	}
	// A retry after a lost answer does not create a second call.
	for _, err := range deliver(t, c, items[2:]) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(st.Calls()) != 1 || st.Duplicates() != 1 {
		t.Fatalf("after a retry: %d calls, %d duplicates", len(st.Calls()), st.Duplicates())
	}
}

func TestMissedAndUnmappedCalls(t *testing.T) {
	st := crmtest.NewRetailCRM(key)
	defer st.Close()
	c := newConnector(t, st)
	missed := answered()
	missed.Legs, missed.AnsweredBy, missed.Result, missed.TalkSeconds, missed.WaitSeconds = nil, "", "no-answer", 0, 30
	for _, err := range deliver(t, c, c.Items(crm.Event{Kind: crm.Ended, Call: missed})) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if ev := st.Events(); len(ev) != 1 || ev[0].HangupStatus != "no answered" {
		t.Fatalf("events %+v", ev)
	}
	if calls := st.Calls(); len(calls) != 1 || calls[0].Result != "no answer" || calls[0].DurationWaiting != 30 || calls[0].ExternalID != "c1-0" {
		t.Fatalf("calls %+v", calls)
	}
	unmapped := answered()
	unmapped.Rung = []crm.Person{{Employee: "sidorov", Extension: "104"}}
	unmapped.Legs[0].Person = unmapped.Rung[0]
	if items := c.Items(crm.Event{Kind: crm.Ended, Call: unmapped}); len(items) != 0 {
		t.Fatalf("unmapped employee's call queued %d items", len(items))
	}
}

func TestErrorsAreClassified(t *testing.T) {
	st := crmtest.NewRetailCRM(key)
	defer st.Close()
	c := newConnector(t, st)
	it := c.Items(crm.Event{Kind: crm.Ringing, Call: answered()})[0]
	var tmp *outbox.Temporary
	var perm *outbox.Permanent

	st.SetMode(crmtest.Busy503)
	if err := c.Deliver(context.Background(), &it); !errors.As(err, &tmp) || tmp.After != time.Second {
		t.Fatalf("503: %v", err)
	}
	st.SetMode(crmtest.Fail500)
	if err := c.Deliver(context.Background(), &it); !errors.As(err, &tmp) {
		t.Fatalf("500: %v", err)
	}
	st.SetMode(crmtest.Down)
	if err := c.Deliver(context.Background(), &it); !errors.As(err, &tmp) {
		t.Fatalf("down: %v", err)
	}
	st.SetMode(crmtest.Normal)
	bad := it
	var r request
	_ = json.Unmarshal(bad.Body, &r)
	r.Form["event"] = `{"phone":"79161234567","type":"sideways","codes":["101"],"callExternalId":"c1"}`
	bad.Body, _ = json.Marshal(r)
	if err := c.Deliver(context.Background(), &bad); !errors.As(err, &perm) || !strings.Contains(err.Error(), "Validation error") {
		t.Fatalf("validation: %v", err)
	}
	wrong := New(Config{URL: st.URL, APIKey: "wrong-key-0123456789"}, nil)
	if err := wrong.Deliver(context.Background(), &it); !errors.As(err, &tmp) || !strings.Contains(err.Error(), "Wrong") {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestModuleRegistrationIsIdempotent(t *testing.T) {
	st := crmtest.NewRetailCRM(key)
	defer st.Close()
	c := newConnector(t, st)
	for range 2 {
		if err := c.Register(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	m, edits := st.Module("callgate")
	var mod struct {
		ClientID     string
		Integrations struct {
			Telephony struct {
				MakeCallURL     string
				AdditionalCodes []struct {
					UserID int
					Code   string
				}
			}
		}
	}
	if err := json.Unmarshal(m, &mod); err != nil || edits != 2 || mod.ClientID != "client-123" ||
		mod.Integrations.Telephony.MakeCallURL != "https://callgate.example.ru/api/v1/retailcrm/make-call" || len(mod.Integrations.Telephony.AdditionalCodes) != 2 {
		t.Fatalf("module %s (%d edits)", m, edits)
	}
}

// drain queues items in a fresh outbox (a backlog) and delivers them,
// returning once it is empty or after limit.
func drain(tb testing.TB, c *Connector, items []outbox.Item, limit time.Duration) *outbox.Outbox {
	tb.Helper()
	db, err := bolt.Open(filepath.Join(tb.TempDir(), "o.db"), 0o600, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	ob, err := outbox.Open(db, "retailcrm", c, outbox.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := ob.Put(items...); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ob.Run(ctx)
	for deadline := time.Now().Add(limit); ob.Status().Depth > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	return ob
}

// A burst of 1,000 queued popups goes out within RetailCRM's limits.
func TestBurstStaysWithinRateLimits(t *testing.T) {
	t.Parallel()
	st := crmtest.NewRetailCRM(key)
	defer st.Close()
	c := newConnector(t, st)
	var items []outbox.Item
	for i := range 1000 {
		call := answered()
		call.ID = fmt.Sprint("burst", i)
		items = append(items, c.Items(crm.Event{Kind: crm.Ringing, Call: call})...)
	}
	drain(t, c, items, 60*time.Second)
	if v := st.Violations(); len(v) > 0 {
		t.Fatalf("rate limit exceeded %d times: %v", len(v), v[:min(3, len(v))])
	}
	if n := len(st.Events()); n != 1000 {
		t.Fatalf("%d of 1000 delivered", n)
	}
}

// BenchmarkCatchUp delivers a backlog of b.N queued operations (a popup and
// a history upload per call, as after an outage) to the stand-in at
// RetailCRM's real rate limits: go test -bench CatchUp -benchtime 10000x.
func BenchmarkCatchUp(b *testing.B) {
	st := crmtest.NewRetailCRM(key)
	defer st.Close()
	msk, _ := time.LoadLocation("Europe/Moscow")
	c := New(Config{URL: st.URL, APIKey: key, Site: "shop", Location: msk}, nil)
	var items []outbox.Item
	for i := 0; len(items) < b.N; i++ {
		call := answered()
		call.ID = fmt.Sprint("backlog", i)
		all := c.Items(crm.Event{Kind: crm.Ended, Call: call})
		items = append(items, all[0], all[1]) // hangup popup + history upload
	}
	b.ResetTimer() // queueing the backlog in one transaction is part of it: milliseconds
	ob := drain(b, c, items[:b.N], time.Hour)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
	if d := ob.Status().Depth; d > 0 {
		b.Fatalf("%d items left", d)
	}
	if v := st.Violations(); len(v) > 0 {
		b.Fatalf("rate limit exceeded: %v", v[0])
	}
}

// A transferred call's two legs become two history entries, each with its
// own employee, duration and recording, and both employees get the popups.
func TestTransferredCallHasOneEntryPerLeg(t *testing.T) {
	st := crmtest.NewRetailCRM(key)
	defer st.Close()
	c := newConnector(t, st)
	call := answered()
	pe := crm.Person{Employee: "petrov", Extension: "103", CRMUser: 9}
	call.Legs[0].Ended, call.Legs[0].TalkSeconds = t0.Add(25*time.Second), 20
	call.Legs = append(call.Legs, crm.Leg{N: 2, Person: pe, Answered: t0.Add(25 * time.Second), Ended: t0.Add(65 * time.Second), TalkSeconds: 40,
		RecordURL: "https://callgate.example.ru/api/v1/recordings/c1-2?exp=1&sig=cd", TransferredFrom: "ivanov"})
	for _, err := range deliver(t, c, c.Items(crm.Event{Kind: crm.Ended, Call: call})) {
		if err != nil {
			t.Fatal(err)
		}
	}
	calls := st.Calls()
	if len(calls) != 2 || calls[0].UserID != 7 || calls[0].Duration != 20 || calls[1].UserID != 9 || calls[1].Duration != 40 ||
		calls[1].ExternalID != "c1-2" || calls[1].RecordURL == calls[0].RecordURL || calls[1].DurationWaiting != 0 {
		t.Fatalf("history %+v", calls)
	}
	if ev := st.Events(); len(ev) != 1 || len(ev[0].UserIDs) != 2 {
		t.Fatalf("hangup event %+v", ev)
	}
}

// Auto-create per trunk: an unknown caller becomes a customer managed by the
// employee who took the call (contact+deal: with an order); repeating the
// operation creates nothing twice, nor do the caller's next calls; "none"
// queues nothing. A key without the rights is refused once, parked as a dead letter
// with RetailCRM's text, and the call's history still arrives.
func TestAutocreatePerTrunk(t *testing.T) {
	st := crmtest.NewRetailCRM(key)
	defer st.Close()
	c := newConnector(t, st)
	call := answered()
	call.Autocreate = "none"
	for _, it := range c.Items(crm.Event{Kind: crm.Ended, Call: call}) {
		if it.Kind == "autocreate" {
			t.Fatal("autocreate none queued a customer")
		}
	}
	call.Autocreate = "contact+deal"
	items := c.Items(crm.Event{Kind: crm.Ended, Call: call})
	if len(items) != 3 || items[1].Kind != "autocreate" || items[2].Kind != "upload" {
		t.Fatalf("items %+v", items)
	}
	for range 2 { // the second time as a retry after a lost answer
		if err := c.Deliver(context.Background(), &items[1]); err != nil {
			t.Fatal(err)
		}
	}
	cust, orders := st.Customers(), st.Orders()
	if len(cust) != 1 || cust[0].ManagerID != 7 || cust[0].Phones[0].Number != "79161234567" || cust[0].Site != "shop" {
		t.Fatalf("customers %+v", cust)
	}
	// The order names its customer by the id RetailCRM gave it.
	if len(orders) != 1 || orders[0].ManagerID != 7 || orders[0].Customer.ID != cust[0].ID || orders[0].Site != "shop" {
		t.Fatalf("orders %+v", orders)
	}
	// The next calls from that number find a customer: nothing more.
	for _, id := range []string{"c2", "c3"} {
		again := answered()
		again.ID, again.Autocreate = id, "contact+deal"
		deliver(t, c, c.Items(crm.Event{Kind: crm.Ended, Call: again}))
	}
	if len(st.Customers()) != 1 || len(st.Orders()) != 1 {
		t.Fatalf("calls from a client callgate created made more: %d customers, %d orders", len(st.Customers()), len(st.Orders()))
	}

	// No rights: refused for good, logged once; history still delivered.
	st2 := crmtest.NewRetailCRM(key)
	defer st2.Close()
	st2.DenyCreate(true)
	c2 := newConnector(t, st2)
	db, err := bolt.Open(filepath.Join(t.TempDir(), "o.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var refusals int
	ob, _ := outbox.Open(db, "retailcrm", c2, outbox.Options{OnResult: func(it *outbox.Item, err error) {
		if err != nil {
			refusals++
		}
	}})
	call.Autocreate = "contact"
	_ = ob.Put(c2.Items(crm.Event{Kind: crm.Ended, Call: call})...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ob.Run(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for (len(st2.Calls()) != 1 || ob.Status().Dead != 1) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	dead, _ := ob.DeadLetters()
	if len(st2.Calls()) != 1 || len(dead) != 1 || !strings.Contains(dead[0].LastError, "Access denied") || refusals != 1 {
		t.Fatalf("calls %d, dead letters %+v, refusals %d", len(st2.Calls()), dead, refusals)
	}
}

// A backlog of history (as after an outage) is uploaded at most 50 calls a
// request, each call once, within the rate limits.
func TestHistoryBacklogUploadsInBatches(t *testing.T) {
	st := crmtest.NewRetailCRM(key)
	defer st.Close()
	c := newConnector(t, st)
	var items []outbox.Item
	for i := range 120 {
		call := answered()
		call.ID = fmt.Sprint("batch", i)
		items = append(items, c.Items(crm.Event{Kind: crm.Ended, Call: call})...)
	}
	drain(t, c, items, 30*time.Second)
	if n, u := len(st.Calls()), st.Uploads(); n != 120 || u != 3 || st.Duplicates() != 0 {
		t.Fatalf("%d calls in %d requests (%d duplicates), want 120 in 3", n, u, st.Duplicates())
	}
	if v := st.Violations(); len(v) > 0 {
		t.Fatalf("rate limit exceeded: %v", v[0])
	}
}

// Auto-create is for new clients calling in: three calls from a client the
// CRM knows create no order, and an outbound call to an unknown number
// creates no customer.
func TestAutocreateOnlyForNewCallers(t *testing.T) {
	st := crmtest.NewRetailCRM(key)
	defer st.Close()
	st.AddCustomer("Анна", "Смирнова", "79161234567")
	c := newConnector(t, st)
	for _, id := range []string{"k1", "k2", "k3"} {
		call := answered()
		call.ID, call.Autocreate = id, "contact+deal"
		for _, err := range deliver(t, c, c.Items(crm.Event{Kind: crm.Ended, Call: call})) {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	out := answered()
	out.ID, out.Direction, out.Outside, out.Autocreate = "o1", "outbound", "+79169990000", "contact+deal"
	items := c.Items(crm.Event{Kind: crm.Ended, Call: out})
	for _, it := range items {
		if it.Kind == "autocreate" {
			t.Fatalf("an outbound call queued a customer: %+v", it)
		}
	}
	deliver(t, c, items)
	if len(st.Customers()) != 1 || len(st.Orders()) != 0 {
		t.Fatalf("customers %+v, orders %+v; want only Анна Смирнова and no order", st.Customers(), st.Orders())
	}
	if len(st.Calls()) != 4 {
		t.Fatalf("%d calls in the history, want all 4", len(st.Calls()))
	}
}

// Call tracking reaches the history and the order: calls/upload carries
// the call's source (UTM marks) and so does the order made for a new
// caller.
func TestSourceInHistoryAndOrders(t *testing.T) {
	st := crmtest.NewRetailCRM(key)
	defer st.Close()
	c := newConnector(t, st)
	call := answered()
	call.Autocreate = "contact+deal"
	call.Tracking = &crm.Tracking{Number: "+74951234567", Dynamic: true, Marks: crm.Marks{Source: "yandex", Medium: "cpc", Campaign: "spring", Term: "кондиционер", Content: "ad1"}}
	for _, err := range deliver(t, c, c.Items(crm.Event{Kind: crm.Ended, Call: call})) {
		if err != nil {
			t.Fatal(err)
		}
	}
	want := crmtest.RetailSource{Source: "yandex", Medium: "cpc", Campaign: "spring", Keyword: "кондиционер", Content: "ad1"}
	calls := st.Calls()
	if len(calls) != 1 || calls[0].Source == nil || *calls[0].Source != want {
		t.Fatalf("uploaded calls %+v, want source %+v", calls, want)
	}
	orders := st.Orders()
	if len(orders) != 1 || orders[0].Source == nil || *orders[0].Source != want {
		t.Fatalf("orders %+v, want source %+v", orders, want)
	}
}

// Several stores: a call on a trunk number of the second store reaches
// RetailCRM under that store's site code — its popup, its history and the
// customer and order made for it — and the module's externalPhones name
// each number's store; the other trunk's calls stay in the default store.
func TestCallsUseTheirTrunksStore(t *testing.T) {
	st := crmtest.NewRetailCRM(key)
	defer st.Close()
	msk, _ := time.LoadLocation("Europe/Moscow")
	c := New(Config{URL: st.URL, APIKey: key, Site: "shop", ModuleCode: "callgate", Location: msk,
		PublicURL: "https://callgate.example.ru", ClientID: "client-123", Users: map[string]int{"101": 7},
		ExternalPhones: []string{"+74951234567", "+74957654321"}, Sites: map[string]string{"+74957654321": "shop2"}}, nil)
	first, second := answered(), answered()
	second.ID, second.TrunkNumber, second.Outside, second.Autocreate = "c2", "+74957654321", "+79160000002", "contact+deal"
	for _, call := range []crm.Call{first, second} {
		for _, k := range []string{crm.Ringing, crm.Ended} {
			for _, err := range deliver(t, c, c.Items(crm.Event{Kind: k, Call: call})) {
				if err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, e := range st.Events() {
		want := map[string]string{"c1": "shop", "c2": "shop2"}[e.CallExternalID]
		if e.Site != want {
			t.Errorf("event %s of %s: site %q, want %q", e.Type, e.CallExternalID, e.Site, want)
		}
	}
	for _, h := range st.Calls() {
		want := map[string]string{"+74951234567": "shop", "+74957654321": "shop2"}[h.ExternalPhone]
		if h.Site != want {
			t.Errorf("history %s: site %q, want %q", h.ExternalID, h.Site, want)
		}
	}
	if cs, os := st.Customers(), st.Orders(); len(cs) != 1 || cs[0].Site != "shop2" || len(os) != 1 || os[0].Site != "shop2" {
		t.Errorf("customers %+v, orders %+v: want both in shop2", cs, os)
	}
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	m, _ := st.Module("callgate")
	var module struct {
		Integrations struct {
			Telephony struct {
				ExternalPhones []struct{ SiteCode, ExternalPhone string }
			}
		}
	}
	if err := json.Unmarshal(m, &module); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range module.Integrations.Telephony.ExternalPhones {
		got[p.ExternalPhone] = p.SiteCode
	}
	if got["+74951234567"] != "shop" || got["+74957654321"] != "shop2" {
		t.Fatalf("externalPhones %v", got)
	}
}

// The client's card: the customer's name and link, their orders with links
// and their store, and the company of the corporate customer they are a
// contact person of; a customer who is nobody's contact has no company,
// and a number RetailCRM does not know has no card.
func TestClientCardWithOrdersAndCompany(t *testing.T) {
	st := crmtest.NewRetailCRM(key)
	defer st.Close()
	c := newConnector(t, st)
	anna := st.AddCustomer("Анна", "Смирнова", "79161234567")
	order := st.AddOrder(anna, "1042A", "shop-2")
	st.AddCorporate("Ромашка (опт)", "ООО «Ромашка»", anna)
	st.AddCorporate("Без юрлица", "", st.AddCustomer("Олег", "", "79160000009"))
	ctx := context.Background()
	cl, err := c.Client(ctx, "+79161234567")
	if err != nil || cl == nil {
		t.Fatalf("card: %+v, %v", cl, err)
	}
	want := crm.Client{CRM: "retailcrm", Name: "Анна Смирнова", Company: "ООО «Ромашка»", Site: "shop-2",
		URL: st.URL + "/customers/" + strconv.Itoa(anna)}
	if cl.Name != want.Name || cl.Company != want.Company || cl.Site != want.Site || cl.URL != want.URL {
		t.Errorf("card %+v, want %+v", cl, want)
	}
	if len(cl.Deals) != 1 || cl.Deals[0].Title != "№ 1042A" || cl.Deals[0].URL != st.URL+"/orders/"+strconv.Itoa(order)+"/edit" {
		t.Errorf("orders on the card: %+v", cl.Deals)
	}
	if oleg, err := c.Client(ctx, "+79160000009"); err != nil || oleg.Company != "Без юрлица" || len(oleg.Deals) != 0 {
		t.Errorf("a corporate customer without a legal entity is named by its nickname: %+v, %v", oleg, err)
	}
	if nobody, err := c.Client(ctx, "+79990000000"); nobody != nil || err != nil {
		t.Errorf("unknown number: %+v, %v", nobody, err)
	}
	if v := st.Violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
}
