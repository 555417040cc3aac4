package callmodel

import (
	"testing"

	"callgate/gateway/config"
	"callgate/sip/b2bua"
)

// After SetAccounts a call on a new account gets its trunk number and
// source; an account no longer configured gives none.
func TestSetAccountsAppliesToNewCalls(t *testing.T) {
	m, events := model(t, false, false)
	m.SetAccounts([]config.Account{{User: "shop", Number: "8 (495) 765-43-21", Source: "avito"}})
	shop := inbound
	shop.CallID, shop.Account = "c-shop", "shop"
	m.CallEvent(at(shop, 0, b2bua.EventRinging, nil))
	if r := (<-events).Record; r.TrunkNumber != "+74957654321" || r.Tracking == nil || r.Tracking.Source != "avito" {
		t.Fatalf("a call on the new account: %+v %+v", r, r.Tracking)
	}
	m.CallEvent(at(inbound, 0, b2bua.EventRinging, nil)) // sales1, no longer configured
	if r := (<-events).Record; r.TrunkNumber != "" || r.Tracking != nil {
		t.Fatalf("a call on a removed account keeps its number: %+v", r)
	}
}
