package e2e

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
	return crmOffice(t, st, nil, trunks, more)
}

const (
	megaplanUser     = "api@office"
	megaplanPassword = "megaplan-e2e-pass"
)

// crmStandIns starts both CRM stand-ins (Megaplan allowing 50 requests a
// second), closed after the test's daemon stops.
func crmStandIns(t *testing.T) (*crmtest.RetailCRM, *crmtest.Megaplan) {
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	mp := crmtest.NewMegaplan(megaplanUser, megaplanPassword, 50)
	t.Cleanup(mp.Close)
	return st, mp
}

// crmRetryMax keeps the tests' waits short: a CRM that comes back is tried
// again within two seconds.
const crmRetryMax = "2s"

// crmOffice is retailOffice with Megaplan enabled too when mp is not nil:
// ivanov is Employee 1000007 there and petrov 1000009.
func crmOffice(t *testing.T, st *crmtest.RetailCRM, mp *crmtest.Megaplan, trunks, more string) *office {
	t.Helper()
	opts := officeOpts{HTTPExtra: `public_url = "http://127.0.0.1:HTTPPORT"`}
	if st != nil {
		opts.IvanovExtra = "retailcrm_user = 7\n"
		opts.Extra = trunks + fmt.Sprintf(`[crm.retailcrm]
enabled = true
url = %q
api_key = %q
site = "shop"
retry_max = %q
`, st.URL, retailKey, crmRetryMax) + more
	} else {
		opts.Extra = trunks + more
	}
	if mp != nil {
		opts.IvanovExtra += "megaplan_user = 1000007\n"
		opts.PetrovExtra = "megaplan_user = 1000009\n"
		opts.Extra += fmt.Sprintf(`[crm.megaplan]
enabled = true
url = %q
username = %q
password = %q
rps = 50
poll = "1s"
retry_max = %q
`, mp.URL, megaplanUser, megaplanPassword, crmRetryMax)
	}
	return newOffice(t, opts)
}

// megaplanCall waits for the stand-in to hold a call by providerId in a
// state and returns it.
func megaplanCall(o *office, mp *crmtest.Megaplan, provider, state string) crmtest.MegaplanCall {
	o.t.Helper()
	var found crmtest.MegaplanCall
	o.d.waitFor("call "+provider+" "+state+" in Megaplan", 15*time.Second, func() bool {
		for _, c := range mp.Calls() {
			if c.ProviderID == provider && c.State == state {
				found = c
				return true
			}
		}
		return false
	})
	return found
}

// fetchRecording checks that a recording link answers with a WAV file.
func fetchRecording(t *testing.T, link string) {
	t.Helper()
	res, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "audio/wav" || !bytes.HasPrefix(body.Bytes(), []byte("RIFF")) {
		t.Fatalf("recording link %s: %d %q", link, res.StatusCode, res.Header.Get("Content-Type"))
	}
}

// An answered inbound call and a missed one reach RetailCRM and Megaplan as
// popups and history with a working recording link; an internal call never
// does.
func TestCRMsGetCallsAndRecordingLinks(t *testing.T) {
	st, mp := crmStandIns(t)
	o := crmOffice(t, st, mp, "", "")
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
	fetchRecording(t, h.RecordURL)
	mc := megaplanCall(o, mp, rec.ID, "finished")
	if mc.Type != "in" || mc.FromPhone != "+79161234567" || mc.ToUser == nil || mc.ToUser.ID != "1000007" ||
		strings.Join(mc.States, ",") != "calling,talking,finished" || mc.TimeTo == nil || len(mc.RecordLinks) != 1 {
		t.Fatalf("Megaplan call %+v", mc)
	}
	fetchRecording(t, mc.RecordLinks[0])

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
	missedRec := o.lastCall()
	if m := megaplanCall(o, mp, missedRec.ID, "finished"); m.Type != "miss" || m.FromPhone != "+79167654321" || m.ToUser.ID != "1000007" {
		t.Fatalf("missed call in Megaplan %+v", m)
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
	if n := len(mp.Calls()); n != 2 {
		t.Fatalf("%d calls in Megaplan, want 2: %+v", n, mp.Calls())
	}
	res, err := o.d.get("/api/v1/crm/status", true)
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
	if s, ok := status.CRM["megaplan"]; !ok || s.Depth != 0 {
		t.Fatalf("crm status %+v", status)
	}
	if len(st.Violations())+len(mp.Violations()) > 0 {
		t.Fatalf("rate limits exceeded: %v %v", st.Violations(), mp.Violations())
	}
}

// Both CRMs are down while 200 calls happen and callgate is restarted twice
// (real process restarts) during the outage, each time with a call still
// talking that the shutdown ends; once they are back every call arrives
// exactly once, in order per call. Then, with responses lost after the CRM
// committed them, there are still no duplicates.
func TestCRMOutageWithRestarts(t *testing.T) {
	st, mp := crmStandIns(t)
	o := crmOffice(t, st, mp, "", "")
	o.d.waitFor("module registered", 10*time.Second, func() bool { m, _ := st.Module("callgate"); return m != nil })
	st.SetMode(crmtest.Down)
	mp.SetMode(crmtest.Down)
	// Each phase has its own deadline: on a slow machine the catch-up
	// alone takes a good part of a shared one.
	ctx := withTimeout(t, 120*time.Second)
	const total = 202 // 200 hung up by the VPBX, 2 by the restarts
	place := func(n int) {
		for range n {
			vpbxSide, _, _ := o.inbound(ctx, "127.0.0.1:30990", "127.0.0.1:30991")
			<-nextCall(t, o.phones["102"]).Gone()
			if err := vpbxSide.Hangup(ctx); err != nil {
				t.Fatalf("hang up: %v", err)
			}
		}
	}
	restart := func() {
		// The shutdown ends this call: its hangup must be queued before
		// the store closes, or the CRM never hears of it.
		o.inbound(ctx, "127.0.0.1:30990", "127.0.0.1:30991")
		<-nextCall(t, o.phones["102"]).Gone()
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
	place(total - 142)
	o.d.waitFor("every call's operations queued", 10*time.Second, func() bool { return o.d.metric(`callgate_crm_outbox_depth{crm="retailcrm"}`) >= 3*total })
	if len(st.Calls()) != 0 || len(mp.Calls()) != 0 {
		t.Fatal("the stand-ins took calls while down")
	}
	st.SetMode(crmtest.Normal)
	mp.SetMode(crmtest.Normal)
	o.d.waitFor("all calls delivered", 90*time.Second, func() bool {
		return len(st.Calls()) == total && len(st.Events()) == 2*total && o.d.metric(`callgate_crm_outbox_depth{crm="megaplan"}`) == 0
	})
	megaplanOnce(t, mp, total)
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
	ctx = withTimeout(t, 60*time.Second)
	st.SetMode(crmtest.DropResponse)
	mp.SetMode(crmtest.DropResponse)
	place(5)
	o.d.waitFor("five more uploads attempted", 20*time.Second, func() bool {
		return len(st.Calls()) == total+5 && st.Duplicates() >= 5 && len(mp.Calls()) == total+5
	})
	time.Sleep(time.Second) // let the retries of the lost answers happen
	st.SetMode(crmtest.Normal)
	mp.SetMode(crmtest.Normal)
	o.d.waitFor("outbox drained", 30*time.Second, func() bool {
		return o.d.metric(`callgate_crm_outbox_depth{crm="retailcrm"}`) == 0 && o.d.metric(`callgate_crm_outbox_depth{crm="megaplan"}`) == 0
	})
	megaplanOnce(t, mp, total+5)
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
	t.Cleanup(st.Close)
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
	// A restart registers the module again, the same one: same code, same
	// clientId, so the CRM's settings keep working.
	o.d.stop()
	o.d = startDaemon(t, o.d.cfg)
	o.d.waitFor("module registered again", 10*time.Second, func() bool { _, edits := st.Module("callgate"); return edits == 2 })
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	for _, ext := range []string{"101", "102", "103"} {
		mustRegister(t, o.phones[ext])
	}
	first := module.ClientID
	if m, _ := st.Module("callgate"); json.Unmarshal(m, &module) != nil || module.ClientID != first {
		t.Fatalf("clientId changed across a restart: %q → %q", first, module.ClientID)
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
	const routingConf = `[routing]
responsible_timeout = "2s"
crm_budget = "300ms"
`
	t.Run("retailcrm", func(t *testing.T) {
		st := crmtest.NewRetailCRM(retailKey)
		t.Cleanup(st.Close)
		o := crmOffice(t, st, nil, secondTrunk, routingConf)
		st.SetManager("79161234567", 7) // ivanov looks after this client
		smartRouting(t, o, func() { st.SetSlow(5 * time.Second) }, func() { st.SetMode(crmtest.Normal) })
	})
	t.Run("megaplan", func(t *testing.T) {
		mp := crmtest.NewMegaplan(megaplanUser, megaplanPassword, 50)
		t.Cleanup(mp.Close)
		o := crmOffice(t, nil, mp, secondTrunk, routingConf)
		mp.SetRoute("+79161234567", "1000007")
		smartRouting(t, o, func() { mp.SetSlow(5 * time.Second) }, func() { mp.SetMode(crmtest.Normal) })
	})
}

// smartRouting runs the smart-routing checks against an office whose CRM
// names ivanov as responsible for +79161234567.
func smartRouting(t *testing.T, o *office, hang, recover func()) {
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
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

	// The CRM hangs: the first call waits at most the budget, the next not at all.
	hang()
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
	recover()
}

// An outbound call from ivanov's phone and an inbound call ivanov transfers
// to petrov reach both CRMs: an "out" popup and history, and for the
// transfer one entry per leg, each with its own employee and recording
// link (petrov is mapped in Megaplan only).
func TestCRMsGetOutboundAndTransferredCalls(t *testing.T) {
	st, mp := crmStandIns(t)
	o := crmOffice(t, st, mp, "", "")
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
	out := o.lastCall()
	if mc := megaplanCall(o, mp, out.ID, "finished"); mc.Type != "out" || mc.ToPhone != "+79167654321" || mc.FromUser == nil ||
		mc.FromUser.ID != "1000007" || len(mc.RecordLinks) != 1 || strings.Join(mc.States, ",") != "calling,talking,finished" {
		t.Fatalf("outbound call in Megaplan %+v", mc)
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
	l1, l2 := megaplanCall(o, mp, rec.ID, "finished"), megaplanCall(o, mp, rec.ID+"-2", "finished")
	if l1.ToUser.ID != "1000007" || l2.ToUser.ID != "1000009" || len(l1.RecordLinks) != 1 || len(l2.RecordLinks) != 1 || l1.RecordLinks[0] == l2.RecordLinks[0] {
		t.Fatalf("legs in Megaplan %+v / %+v", l1, l2)
	}
	fetchRecording(t, l2.RecordLinks[0])
}

// A trunk marked crm_exclude never reaches the CRMs, even for a mapped
// employee; the same employee's call on another trunk does, and that
// trunk's autocreate rule makes the unknown caller a customer with an order
// (RetailCRM) or a client with a deal in the trunk's scheme (Megaplan),
// both in the hands of the employee who took the call.
func TestCRMTrunkRules(t *testing.T) {
	st, mp := crmStandIns(t)
	o := crmOffice(t, st, mp, `[[upstream.account]]
user = "support"
password = "Secret456"
employee = "ivanov"
number = "+74951112233"
crm_exclude = true
`, "")
	// sales1 creates contacts for unknown callers.
	o.d.stop()
	o.d.cfg.Extra = strings.Replace(o.d.cfg.Extra, "employee = \"ivanov\"\n", "employee = \"ivanov\"\nautocreate = \"contact+deal\"\nprogram = 12\n", 1)
	o.d = startDaemon(t, o.d.cfg)
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	o.d.waitMetric(`callgate_upstream_registered{account="sales1"}`, 1, 10*time.Second)
	for _, ext := range []string{"101", "102", "103"} {
		mustRegister(t, o.phones[ext])
	}
	ctx := withTimeout(t, 30*time.Second)
	o.shortCall(ctx, "support", "79160000002")
	o.shortCall(ctx, "sales1", "79160000003")
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
	o.d.waitFor("the client and the deal in Megaplan", 10*time.Second, func() bool { return len(mp.Deals()) == 1 })
	ks, ds := mp.Contractors(), mp.Deals()
	if len(ks) != 1 || ks[0].ContactInfo[0].Value != "+79160000003" || ks[0].Responsibles[0].ID != "1000007" {
		t.Fatalf("Megaplan clients %+v", ks)
	}
	if d := ds[0]; d.Program.ID != "12" || d.Manager.ID != "1000007" || d.Contractor.ID != ks[0].ID {
		t.Fatalf("Megaplan deal %+v", d)
	}
	for _, c := range mp.Calls() {
		if c.FromPhone == "+79160000002" {
			t.Fatalf("a call on an excluded trunk reached Megaplan: %+v", c)
		}
	}
}
