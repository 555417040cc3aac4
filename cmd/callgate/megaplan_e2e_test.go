package main

import (
	"testing"
	"time"

	"callgate/crm/crmtest"
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
