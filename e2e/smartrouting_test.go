package e2e

import (
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/sip/siptest"
)

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
