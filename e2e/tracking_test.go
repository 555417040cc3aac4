package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"callgate/crm"
	"callgate/crm/crmtest"
	"callgate/gateway/tracking/mangotest"
	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
)

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

// Call tracking. Static: the number dialled names the advertising channel
// in the popup. Dynamic: callgate asks Mango's API (signed, outbound) who
// was shown the number and the popup, the history and the auto-created
// client carry their UTM marks. A hanging Mango API delays neither the call
// nor, once known to hang, the popup.
func TestCallTrackingReachesCRMs(t *testing.T) {
	st, mp := crmStandIns(t)
	mango := mangotest.New("vpbx-key-0123", "vpbx-salt-4567")
	t.Cleanup(mango.Close)
	mango.Bind("74951112233", crm.Marks{Source: "yandex", Medium: "cpc", Campaign: "winter-sale", Page: "https://shop.example.ru/sale"})
	o := crmOffice(t, st, mp, fmt.Sprintf(`[[upstream.account]]
user = "support"
password = "Secret456"
employee = "ivanov"
number = "+74951112233"
source = "Яндекс.Директ"
tracking = "static"
autocreate = "contact"
[mango]
url = "%s/vpbx/"
api_key = "vpbx-key-0123"
api_salt = "vpbx-salt-4567"
budget = "500ms"
`, mango.URL), "")
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	ctx := withTimeout(t, 60*time.Second)
	popup := func(phone string) crmtest.RetailEvent {
		var ev crmtest.RetailEvent
		o.d.waitFor("the popup for "+phone, 10*time.Second, func() bool {
			for _, e := range st.Events() {
				if e.Phone == phone && e.Type == "in" {
					ev = e
					return true
				}
			}
			return false
		})
		return ev
	}

	o.shortCall(ctx, "support", "79161234567")
	if w := popup("79161234567").WebAnalytics; w == nil || w.Campaign.Name != "Яндекс.Директ" || w.Campaign.Code != "+74951112233" ||
		!strings.Contains(w.QueryString, "utm_source=") {
		t.Fatalf("static tracking in the popup: %+v", w)
	}
	if n, _ := mango.Requests(); n != 0 {
		t.Fatal("Mango was asked about a static number")
	}

	o.d.stop()
	o.d.cfg.Extra = strings.Replace(o.d.cfg.Extra, `tracking = "static"`, `tracking = "dynamic"`, 1)
	o.d = startDaemon(t, o.d.cfg)
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	for _, ext := range []string{"101", "102", "103"} {
		mustRegister(t, o.phones[ext])
	}
	o.shortCall(ctx, "support", "79162222222")
	w := popup("79162222222").WebAnalytics
	if w == nil || w.Campaign.Name != "winter-sale" || !strings.Contains(w.QueryString, "utm_medium=cpc") || !strings.Contains(w.QueryString, "utm_source=yandex") {
		t.Fatalf("dynamic tracking in the popup: %+v", w)
	}
	if rec := o.lastCall(); rec.Tracking == nil || rec.Tracking.Source != "yandex" || rec.Tracking.Page != "https://shop.example.ru/sale" || !rec.Tracking.Dynamic {
		t.Fatalf("history tracking %+v", rec.Tracking)
	}
	o.d.waitFor("the client in Megaplan", 10*time.Second, func() bool {
		for _, k := range mp.Contractors() {
			if k.ContactInfo[0].Value == "+79162222222" && strings.Contains(k.Description, "utm_source=yandex") {
				return true
			}
		}
		return false
	})
	if _, refused := mango.Requests(); refused != 0 {
		t.Fatalf("Mango refused %d requests (key or signature)", refused)
	}

	mango.SetSlow(3 * time.Second)
	for _, from := range []string{"79163333333", "79164444444"} {
		if rang := o.shortCall(ctx, "support", from); rang > 200*time.Millisecond {
			t.Fatalf("with Mango hanging the phone rang %s after the INVITE", rang)
		}
		if w := popup(from).WebAnalytics; w == nil || w.Campaign.Code != "+74951112233" {
			t.Fatalf("popup without the visitor: %+v", w)
		}
	}
}

// Per-employee exclusion and a refusal for lack of rights: ivanov is
// excluded from RetailCRM, so his call never reaches it; Megaplan refuses
// to let him create clients, so the refusal is logged once and parked as a
// dead letter while the call itself is logged there.
func TestCRMEmployeeExclusionAndRefusal(t *testing.T) {
	st, mp := crmStandIns(t)
	mp.DenyCreate("1000007")
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

// shortCall places an inbound call from the VPBX to account, which rings
// ivanov's two lines; ivanov answers on 101 and the caller hangs up 300 ms
// later. It returns how long after the INVITE the phone rang.
func (o *office) shortCall(ctx context.Context, account, from string) time.Duration {
	o.t.Helper()
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		if c, err := o.vpbx.Invite(ctx, account, from, siptest.SDP("127.0.0.1:30999")); err == nil {
			time.Sleep(300 * time.Millisecond)
			_ = c.Hangup(ctx)
		}
	}()
	in, other := nextCall(o.t, o.phones["101"]), nextCall(o.t, o.phones["102"])
	rang := time.Since(start)
	if _, err := in.Answer(ctx, siptest.SDP("127.0.0.1:30998")); err != nil {
		o.t.Fatal(err)
	}
	<-other.Gone()
	<-done
	return rang
}

// megaplanOnce checks that Megaplan holds n calls, each once, finished, its
// states in order.
func megaplanOnce(t *testing.T, mp *crmtest.Megaplan, n int) {
	t.Helper()
	order := map[string]int{"calling": 0, "talking": 1, "finished": 2}
	seen := map[string]bool{}
	for _, c := range mp.Calls() {
		if seen[c.ProviderID] {
			t.Fatalf("call %s is in Megaplan twice", c.ProviderID)
		}
		seen[c.ProviderID] = true
		if c.State != "finished" {
			t.Fatalf("call %s left %s: %v", c.ProviderID, c.State, c.States)
		}
		for i := 1; i < len(c.States); i++ {
			if order[c.States[i]] <= order[c.States[i-1]] {
				t.Fatalf("call %s went %v", c.ProviderID, c.States)
			}
		}
	}
	if len(seen) != n || len(mp.Violations()) > 0 {
		t.Fatalf("%d calls in Megaplan, want %d; rate-limit violations %v", len(seen), n, mp.Violations())
	}
}
