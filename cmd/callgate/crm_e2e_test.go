package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/sip/siptest"
)

const retailKey = "retail-e2e-key-0123456789"

// retailOffice is an office whose ivanov is RetailCRM user 7, with the
// connector pointed at a stand-in. trunks is TOML before the connector's
// table (more accounts), more goes after its keys (more keys or tables).
func retailOffice(t *testing.T, st *crmtest.RetailCRM, trunks, more string) *office {
	t.Helper()
	return newOffice(t, officeOpts{
		Extra: trunks + fmt.Sprintf(`[crm.retailcrm]
enabled = true
url = %q
api_key = %q
site = "shop"
`, st.URL, retailKey) + more,
		HTTPExtra:   `public_url = "http://127.0.0.1:HTTPPORT"`,
		IvanovExtra: "retailcrm_user = 7",
	})
}

// An answered inbound call and a missed one reach RetailCRM as popups and
// history with a working recording link; an internal call never does.
func TestRetailCRMGetsCallsAndRecordingLinks(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	defer st.Close()
	o := retailOffice(t, st, "", "")
	o.d.waitFor("module registered", 10*time.Second, func() bool { m, _ := st.Module("callgate"); return m != nil })

	outside, ivanov := tonePeers(t)
	ctx := withTimeout(t, 30*time.Second)
	vpbxSide, _, in := o.inbound(ctx, outside.Addr().String(), ivanov.Addr().String())
	<-nextCall(t, o.phones["102"]).Gone()
	toA, _ := siptest.MediaAddr(vpbxSide.Remote)
	toB, _ := siptest.MediaAddr(in.Request.Body())
	outside.SendTo(toA)
	ivanov.SendTo(toB)
	time.Sleep(1500 * time.Millisecond)
	_ = vpbxSide.Hangup(ctx)
	rec := o.lastCall()

	o.d.waitFor("popup, hangup and history in RetailCRM", 10*time.Second, func() bool { return len(st.Events()) == 2 && len(st.Calls()) == 1 })
	ev := st.Events()
	if ev[0].Type != "in" || ev[0].Phone != "79161234567" || len(ev[0].UserIDs) != 1 || ev[0].UserIDs[0] != 7 || ev[0].CallExternalID != rec.ID ||
		ev[0].Site != "shop" || ev[1].Type != "hangup" || ev[1].HangupStatus != "answered" {
		t.Fatalf("events %+v", ev)
	}
	h := st.Calls()[0]
	if h.Result != "answered" || h.UserID != 7 || h.ExternalID != rec.ID+"-1" || h.Duration < 1 || h.Duration > 3 || h.RecordURL == "" {
		t.Fatalf("history %+v", h)
	}
	res, err := http.Get(h.RecordURL)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "audio/wav" || !bytes.HasPrefix(body.Bytes(), []byte("RIFF")) {
		t.Fatalf("recording link: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}

	// An internal call between ivanov and petrov is never sent.
	go func() {
		c := nextCall(t, o.phones["103"])
		_, _ = c.Answer(ctx, siptest.SDP("127.0.0.1:30980"))
	}()
	call, err := o.phones["101"].Dial(ctx, "103", siptest.SDP("127.0.0.1:30982"))
	if err != nil {
		t.Fatal(err)
	}
	_ = call.Hangup(ctx)

	// A missed call (nobody answers within ring_timeout = 3s).
	missed := make(chan error, 1)
	go func() {
		_, err := o.vpbx.Invite(ctx, "sales1", "79167654321", siptest.SDP("127.0.0.1:30984"))
		missed <- err
	}()
	<-missed
	o.d.waitFor("the missed call in RetailCRM", 10*time.Second, func() bool { return len(st.Calls()) == 2 })
	if m := st.Calls()[1]; m.Result != "no answer" || m.Phone != "79167654321" || m.UserID != 7 {
		t.Fatalf("missed call %+v", m)
	}
	time.Sleep(300 * time.Millisecond)
	for _, e := range st.Events() {
		if e.Phone == "103" || e.Phone == "101" {
			t.Fatalf("an internal call reached RetailCRM: %+v", e)
		}
	}
	if len(st.Events()) != 4 {
		t.Fatalf("%d events, want 4 (two calls)", len(st.Events()))
	}
	res, err = o.d.get("/api/v1/crm/status", true)
	if err != nil {
		t.Fatal(err)
	}
	var status struct {
		CRM map[string]struct {
			Depth int
		}
	}
	_ = decodeJSON(res, &status)
	res.Body.Close()
	if s, ok := status.CRM["retailcrm"]; !ok || s.Depth != 0 {
		t.Fatalf("crm status %+v", status)
	}
	if len(st.Violations()) > 0 {
		t.Fatalf("rate limits exceeded: %v", st.Violations())
	}
}

// The CRM is down while 200 calls happen and callgate is restarted twice
// (real process restarts) during the outage; once it is back every call
// arrives exactly once, popups in order per call. Then, with responses lost
// after RetailCRM committed them, history still has no duplicates.
func TestRetailCRMOutageWithRestarts(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	defer st.Close()
	o := retailOffice(t, st, "", `retry_max = "2s"
`)
	o.d.waitFor("module registered", 10*time.Second, func() bool { m, _ := st.Module("callgate"); return m != nil })
	st.SetMode(crmtest.Down)
	ctx := withTimeout(t, 120*time.Second)
	const total = 200
	place := func(n int) {
		for range n {
			vpbxSide, _, _ := o.inbound(ctx, "127.0.0.1:30990", "127.0.0.1:30991")
			<-nextCall(t, o.phones["102"]).Gone()
			_ = vpbxSide.Hangup(ctx)
		}
	}
	restart := func() {
		o.d.stop()
		o.d = startDaemon(t, o.d.cfg)
		o.d.waitMetric(`callgate_upstream_registered{account="sales1"}`, 1, 10*time.Second)
		for _, ext := range []string{"101", "102", "103"} {
			mustRegister(t, o.phones[ext])
		}
	}
	place(80)
	restart()
	place(60)
	restart()
	place(total - 140)
	o.d.waitFor("every call's operations queued", 10*time.Second, func() bool { return o.d.metric(`callgate_crm_outbox_depth{crm="retailcrm"}`) >= 3*total })
	if len(st.Calls()) != 0 {
		t.Fatal("the stand-in took calls while down")
	}
	st.SetMode(crmtest.Normal)
	o.d.waitFor("all calls delivered", 60*time.Second, func() bool { return len(st.Calls()) == total && len(st.Events()) == 2*total })
	seen := map[string][]string{}
	for _, e := range st.Events() {
		seen[e.CallExternalID] = append(seen[e.CallExternalID], e.Type)
	}
	if len(seen) != total {
		t.Fatalf("%d calls got popups, want %d", len(seen), total)
	}
	for id, kinds := range seen {
		if len(kinds) != 2 || kinds[0] != "in" || kinds[1] != "hangup" {
			t.Fatalf("call %s: events %v", id, kinds)
		}
	}
	if st.Duplicates() != 0 || len(st.Violations()) != 0 {
		t.Fatalf("duplicates %d, rate-limit violations %v", st.Duplicates(), st.Violations())
	}

	// Responses lost after commit: retried, refused as duplicates, counted once.
	st.SetMode(crmtest.DropResponse)
	place(5)
	o.d.waitFor("five more uploads attempted", 20*time.Second, func() bool { return len(st.Calls()) == total+5 && st.Duplicates() >= 5 })
	st.SetMode(crmtest.Normal)
	o.d.waitFor("outbox drained", 20*time.Second, func() bool { return o.d.metric(`callgate_crm_outbox_depth{crm="retailcrm"}`) == 0 })
	ids := map[string]bool{}
	for _, c := range st.Calls() {
		if ids[c.ExternalID] {
			t.Fatalf("call %s stored twice", c.ExternalID)
		}
		ids[c.ExternalID] = true
	}
}

// RetailCRM's makeCallUrl: a wrong clientId is refused; the right one starts
// a click-to-call for the manager with that code, from the shop line given.
func TestRetailCRMMakeCallURL(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	defer st.Close()
	o := retailOffice(t, st, secondTrunk, "")
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	var module struct {
		ClientID     string
		Integrations struct{ Telephony struct{ MakeCallURL string } }
	}
	o.d.waitFor("module registered", 10*time.Second, func() bool {
		m, _ := st.Module("callgate")
		return m != nil && json.Unmarshal(m, &module) == nil
	})
	makeCall := module.Integrations.Telephony.MakeCallURL
	get := func(q url.Values) (int, map[string]any) {
		res, err := http.Get(makeCall + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, body
	}
	q := url.Values{"clientId": {"not-the-client-id"}, "code": {"101"}, "phone": {"89161234567"}, "userId": {"7"}, "externalPhone": {"+74951112233"}}
	if code, body := get(q); code != 403 || body["success"] != false {
		t.Fatalf("wrong clientId: %d %v", code, body)
	}
	select {
	case c := <-o.phones["101"].Calls:
		t.Fatalf("a refused makeCallUrl rang the phone: %s", c.From())
	case <-time.After(200 * time.Millisecond):
	}
	q.Set("clientId", module.ClientID)
	if code, body := get(q); code != 200 || body["callId"] == "" {
		t.Fatalf("makeCallUrl: %d %v", code, body)
	}
	ctx := withTimeout(t, 20*time.Second)
	in := nextCall(t, o.phones["101"])
	if in.From() != "79161234567" {
		t.Fatalf("phone shows %q", in.From())
	}
	if _, err := in.Answer(ctx, siptest.SDP("127.0.0.1:30986")); err != nil {
		t.Fatal(err)
	}
	select {
	case vc := <-o.vpbx.Calls:
		if vc.Request.From().Address.User != "support" || vc.Request.Recipient.User != "79161234567" {
			t.Fatalf("VPBX got %s from %s", vc.Request.Recipient.User, vc.Request.From().Address.User)
		}
		vc.Reject(486, "Busy Here")
	case <-ctx.Done():
		t.Fatal("the client was not dialled")
	}
}

// Smart routing: a client RetailCRM knows rings their responsible manager
// first, then the account's normal target; an unknown client rings the
// normal target at once; a hanging CRM holds a call no longer than the
// budget, and the calls after it not at all.
func TestSmartRoutingToResponsibleManager(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	defer st.Close()
	o := retailOffice(t, st, secondTrunk, `[routing]
responsible_timeout = "2s"
crm_budget = "300ms"
`)
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	st.SetManager("79161234567", 7) // ivanov looks after this client
	ctx := withTimeout(t, 60*time.Second)
	invite := func(from string) (time.Time, chan *siptest.Call) {
		done := make(chan *siptest.Call, 1)
		start := time.Now()
		go func() {
			c, _ := o.vpbx.Invite(ctx, "support", from, siptest.SDP("127.0.0.1:30994"))
			done <- c // nil when refused
		}()
		return start, done
	}

	// Known client: ivanov's lines first, petrov (support's target) after 2 s.
	start, done := invite("79161234567")
	l1, l2 := nextCall(t, o.phones["101"]), nextCall(t, o.phones["102"])
	select {
	case <-o.phones["103"].Calls:
		t.Fatal("the normal target rang while the responsible manager had his turn")
	case <-time.After(1500 * time.Millisecond):
	}
	target := nextCall(t, o.phones["103"])
	if since := time.Since(start); since < 2*time.Second {
		t.Fatalf("fallback after %s, want 2 s", since)
	}
	<-l1.Gone()
	<-l2.Gone()
	if _, err := target.Answer(ctx, siptest.SDP("127.0.0.1:30995")); err != nil {
		t.Fatal(err)
	}
	_ = (<-done).Hangup(ctx)

	// Unknown client: petrov at once.
	_, done = invite("79160000001")
	c := nextCall(t, o.phones["103"])
	_ = c.Reject(486, "Busy Here")
	<-done

	// RetailCRM hangs: the first call waits at most the budget, the next not at all.
	st.SetSlow(5 * time.Second)
	start, done = invite("79162222222")
	c = nextCall(t, o.phones["103"])
	if d := time.Since(start); d > 300*time.Millisecond+200*time.Millisecond {
		t.Fatalf("first phone rang %s after the INVITE with the CRM hanging, budget 300ms", d)
	}
	_ = c.Reject(486, "Busy Here")
	<-done
	start, done = invite("79163333333")
	c = nextCall(t, o.phones["103"])
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("with the CRM known to hang, the first phone rang %s after the INVITE, want < 50 ms", d)
	}
	_ = c.Reject(486, "Busy Here")
	<-done
	st.SetMode(crmtest.Normal)
}

// An outbound call from ivanov's phone and an inbound call ivanov transfers
// to petrov reach RetailCRM: an "out" popup and history, and for the
// transfer one history entry per leg, each with its own recording link.
func TestRetailCRMOutboundAndTransferredCalls(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	defer st.Close()
	o := retailOffice(t, st, "", "")
	ctx := withTimeout(t, 40*time.Second)

	// Outbound: ivanov dials a client who answers, then hangs up.
	go func() {
		vc := <-o.vpbx.Calls
		c, err := vc.Answer(ctx, siptest.SDP("127.0.0.1:30996"))
		if err == nil {
			time.Sleep(1200 * time.Millisecond)
			_ = c.Hangup(ctx)
		}
	}()
	if _, err := o.phones["101"].Dial(ctx, "89167654321", siptest.SDP("127.0.0.1:30997")); err != nil {
		t.Fatal(err)
	}
	o.d.waitFor("the outbound call in RetailCRM", 10*time.Second, func() bool { return len(st.Calls()) == 1 })
	if ev := st.Events(); len(ev) != 2 || ev[0].Type != "out" || ev[0].Phone != "79167654321" || ev[1].HangupStatus != "answered" {
		t.Fatalf("outbound events %+v", ev)
	}
	if h := st.Calls()[0]; h.Type != "out" || h.Result != "answered" || h.UserID != 7 || h.Duration < 1 {
		t.Fatalf("outbound history %+v", h)
	}

	// Transferred: ivanov takes an inbound call and REFERs it to petrov.
	outside, ivanov := tonePeers(t)
	vpbxSide, ivanovSide, _ := o.talking(ctx, outside, ivanov)
	time.Sleep(time.Second)
	if code, err := ivanovSide.Refer(ctx, "sip:103@vpbx.test", ""); err != nil || code != 202 {
		t.Fatalf("REFER: %d %v", code, err)
	}
	if _, err := nextCall(t, o.phones["103"]).Answer(ctx, siptest.SDP("127.0.0.1:30998")); err != nil {
		t.Fatal(err)
	}
	<-ivanovSide.Done()
	time.Sleep(time.Second)
	_ = vpbxSide.Hangup(ctx)
	rec := o.lastCall()
	o.d.waitFor("the transferred call in RetailCRM", 10*time.Second, func() bool { return len(st.Calls()) == 2 })
	// petrov has no RetailCRM user: only ivanov's leg is history there.
	if h := st.Calls()[1]; h.ExternalID != rec.ID+"-1" || h.UserID != 7 || h.RecordURL == "" {
		t.Fatalf("transferred call history %+v", st.Calls())
	}
	if len(rec.Legs) != 2 {
		t.Fatalf("record legs %+v", rec.Legs)
	}
}

// A trunk marked crm_exclude never reaches the CRM, even for a mapped
// employee; the same employee's call on another trunk does, and that
// trunk's autocreate rule makes the unknown caller a customer.
func TestRetailCRMTrunkRules(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	defer st.Close()
	o := retailOffice(t, st, `[[upstream.account]]
user = "support"
password = "Secret456"
employee = "ivanov"
number = "+74951112233"
crm_exclude = true
`, "")
	// sales1 creates contacts for unknown callers.
	o.d.stop()
	o.d.cfg.Extra = strings.Replace(o.d.cfg.Extra, "employee = \"ivanov\"\n", "employee = \"ivanov\"\nautocreate = \"contact\"\n", 1)
	o.d = startDaemon(t, o.d.cfg)
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	o.d.waitMetric(`callgate_upstream_registered{account="sales1"}`, 1, 10*time.Second)
	for _, ext := range []string{"101", "102", "103"} {
		mustRegister(t, o.phones[ext])
	}
	ctx := withTimeout(t, 30*time.Second)
	call := func(account, from string) {
		done := make(chan struct{})
		go func() {
			c, err := o.vpbx.Invite(ctx, account, from, siptest.SDP("127.0.0.1:30999"))
			if err == nil {
				time.Sleep(300 * time.Millisecond)
				_ = c.Hangup(ctx)
			}
			close(done)
		}()
		in := nextCall(t, o.phones["101"])
		other := nextCall(t, o.phones["102"])
		if _, err := in.Answer(ctx, siptest.SDP("127.0.0.1:30998")); err != nil {
			t.Fatal(err)
		}
		<-other.Gone()
		<-done
	}
	call("support", "79160000002")
	call("sales1", "79160000003")
	o.d.waitFor("the sales1 call in RetailCRM", 10*time.Second, func() bool { return len(st.Calls()) == 1 && len(st.Customers()) == 1 })
	time.Sleep(300 * time.Millisecond)
	for _, e := range st.Events() {
		if e.Phone == "79160000002" {
			t.Fatalf("a call on an excluded trunk reached RetailCRM: %+v", e)
		}
	}
	if c := st.Customers()[0]; c.Phones[0].Number != "79160000003" || c.ManagerID != 7 {
		t.Fatalf("customer %+v", c)
	}
}
