package routing

import (
	"errors"
	"testing"
	"time"

	"callgate/gateway/config"
	"callgate/gateway/directory"
	"callgate/sip/b2bua"
)

// A reload routes the next call by the new accounts, groups and ring
// timeout; a call admitted under the old limits keeps its place, and the
// new limits count it.
func TestRouterReload(t *testing.T) {
	cfg := config.Defaults()
	cfg.Employees = []config.Employee{{ID: "ivanov", Extensions: []string{"101"}}, {ID: "petrov", Extensions: []string{"103"}}}
	cfg.Upstream.Accounts = []config.Account{{User: "sales1", Password: "x", Employee: "ivanov"}}
	cfg.Dial.PerLine = 2
	dir := directory.New(&cfg)
	r := New(&cfg, dir)
	first, err := r.Outbound("101", "+74951112233")
	if err != nil {
		t.Fatal(err)
	}

	next := cfg
	next.Upstream.Accounts = []config.Account{{User: "sales1", Password: "x", Employee: "ivanov"}, {User: "support", Password: "y", Group: "desk"}}
	next.Groups = []config.Group{{ID: "desk", Strategy: "ring-all", Members: []string{"petrov", "ivanov"}}}
	next.Calls.RingTimeout = config.Duration(7 * time.Second)
	next.Dial.PerLine = 1
	dir.Replace(&next)
	r.Reload(&next)

	in, err := r.Inbound("support", "79161234567")
	if err != nil || len(in.Steps) != 1 || len(in.Steps[0]) != 2 || in.RingTimeout != 7*time.Second {
		t.Fatalf("the new account's route %+v %v", in, err)
	}
	var refused *b2bua.Refusal
	if _, err := r.Outbound("101", "+74951112244"); !errors.As(err, &refused) || refused.Rule != RuleConcurrent {
		t.Fatalf("a second call with per_line now 1: %v, want %s (the first call still counts)", err, RuleConcurrent)
	}
	first.Lease.End()
	if _, err := r.Outbound("101", "+74951112244"); err != nil {
		t.Fatalf("after the call from before the reload ended: %v", err)
	}
	if n := r.rules.Active("ivanov"); n != 1 {
		t.Fatalf("ivanov has %d calls counted, want 1", n)
	}
}
