package main

import (
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
)

// Three calls from a number Megaplan does not know; a manager then creates
// the client in Megaplan and callgate, polling outbound, attaches the three
// calls to them. Meanwhile the API token expires early and is renewed
// without losing an operation.
func TestMegaplanAttachesEarlierCallsAndRenewsToken(t *testing.T) {
	mp := crmtest.NewMegaplan(megaplanUser, megaplanPassword, 50)
	defer mp.Close()
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
	st := crmtest.NewRetailCRM(retailKey)
	defer st.Close()
	mp := crmtest.NewMegaplan(megaplanUser, megaplanPassword, 50)
	defer mp.Close()
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
