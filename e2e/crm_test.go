package e2e

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
)

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

// A call from another carrier's number attached to the VPBX arrives with a
// login as the From user and the number in P-Asserted-Identity: history
// and both CRMs show the number in E.164, not the SIP address.
func TestOtherCarrierNumbersReachCRMsAsE164(t *testing.T) {
	st, mp := crmStandIns(t)
	o := crmOffice(t, st, mp, "", "")
	ctx := withTimeout(t, 30*time.Second)
	done := make(chan *siptest.Call, 1)
	go func() {
		from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "op17", Host: "sip.othercarrier.ru"}}
		c, _ := o.vpbx.InviteAs(ctx, "sales1", from, siptest.SDP("127.0.0.1:30972"),
			sip.NewHeader("P-Asserted-Identity", `"Office" <tel:+7-495-765-43-21>`))
		done <- c
	}()
	in, other := nextCall(t, o.phones["101"]), nextCall(t, o.phones["102"])
	if in.From() == "op17" {
		t.Fatal("the phone shows the carrier's login, not the number")
	}
	if _, err := in.Answer(ctx, siptest.SDP("127.0.0.1:30973")); err != nil {
		t.Fatal(err)
	}
	<-other.Gone()
	c := <-done
	if c == nil {
		t.Fatal("the call was not answered")
	}
	_ = c.Hangup(ctx)
	rec := o.lastCall()
	if rec.Outside != "+74957654321" {
		t.Fatalf("history shows %q", rec.Outside)
	}
	if mc := megaplanCall(o, mp, rec.ID, "finished"); mc.FromPhone != "+74957654321" {
		t.Fatalf("Megaplan shows %q", mc.FromPhone)
	}
	o.d.waitFor("the call in RetailCRM", 10*time.Second, func() bool { return len(st.Calls()) == 1 })
	if h := st.Calls()[0]; h.Phone != "74957654321" {
		t.Fatalf("RetailCRM shows %q", h.Phone)
	}
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

// Per-employee exclusion and a refusal for lack of rights: ivanov is
// excluded from RetailCRM, so his call never reaches it; Megaplan does not
// let callgate's API user create clients, so the refusal is logged once and
// parked as a dead letter while the call itself is logged there.
func TestCRMEmployeeExclusionAndRefusal(t *testing.T) {
	st, mp := crmStandIns(t)
	mp.DenyClients(true)
	o := crmOffice(t, st, mp, `[[upstream.account]]
user = "support"
password = "Secret456"
employee = "ivanov"
number = "+74951112233"
autocreate = "contact"
`, `exclude = ["ivanov"]
`)
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	ctx := withTimeout(t, 30*time.Second)
	o.shortCall(ctx, "support", "79165550001")
	rec := o.lastCall()
	if mc := megaplanCall(o, mp, rec.ID, "finished"); mc.ToUser.ID != "1000007" {
		t.Fatalf("Megaplan call %+v", mc)
	}
	o.d.waitMetric(`callgate_crm_dead_letters{crm="megaplan"}`, 1, 10*time.Second)
	time.Sleep(2 * time.Second) // a refusal retried would show by now
	if n := strings.Count(o.d.log.String(), "Access denied"); n != 1 {
		t.Fatalf("the refusal was logged %d times, want once", n)
	}
	if len(mp.Contractors()) != 0 {
		t.Fatal("a client was created against the refusal")
	}
	if ev := st.Events(); len(ev) != 0 || len(st.Calls()) != 0 {
		t.Fatalf("an excluded employee's call reached RetailCRM: %+v", ev)
	}
}

// Three calls from a number Megaplan does not know; a manager then creates
// the client in Megaplan and callgate, polling outbound, attaches the three
// calls to them. Meanwhile the API token expires early and is renewed
// without losing an operation.
func TestMegaplanAttachesEarlierCallsAndRenewsToken(t *testing.T) {
	mp := crmtest.NewMegaplan(megaplanUser, megaplanPassword, 50)
	t.Cleanup(mp.Close)
	o := crmOffice(t, nil, mp, "", "")
	ctx := withTimeout(t, 60*time.Second)
	for i := range 3 {
		if i == 1 {
			mp.ExpireTokens()
		}
		vpbxSide, _, _ := o.inbound(ctx, "127.0.0.1:30970", "127.0.0.1:30971")
		<-nextCall(t, o.phones["102"]).Gone()
		time.Sleep(200 * time.Millisecond)
		_ = vpbxSide.Hangup(ctx)
		rec := o.lastCall()
		megaplanCall(o, mp, rec.ID, "finished")
	}
	if g, u := mp.Grants(), mp.Unauthorized(); u < 1 || g["password"]+g["refresh_token"] < 2 {
		t.Fatalf("grants %v after %d refusals: the expired token was not renewed", g, u)
	}
	for _, c := range mp.Calls() {
		if c.FromUser != nil {
			t.Fatalf("call linked before the client exists: %+v", c)
		}
	}
	client := mp.AddContractor("Сидоров", "+7 (916) 123-45-67")
	o.d.waitFor("the three calls attached to the new client", 15*time.Second, func() bool {
		n := 0
		for _, c := range mp.Calls() {
			if c.FromUser != nil && c.FromUser.ID == client {
				n++
			}
		}
		return n == 3
	})
	if n := len(mp.Calls()); n != 3 {
		t.Fatalf("%d calls in Megaplan, want 3", n)
	}
}
