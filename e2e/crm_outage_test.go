package e2e

import (
	"testing"
	"time"

	"callgate/crm/crmtest"
)

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
