package b2bua

import (
	"log/slog"
	"testing"
	"time"
)

// A reload's accounts and ring timeout replace those of Config, and each
// setter keeps what the other set.
func TestSetAccountsAndRingTimeout(t *testing.T) {
	b := New(Config{Accounts: map[string]bool{"sales1": true}, RingTimeout: 5 * time.Second}, nil, fakeRouter{}, &fakeLocator{}, fakeAuth{},
		&fakeMedia{}, &syncEvents{}, slog.New(slog.DiscardHandler))
	if !b.isAccount("sales1") || b.isAccount("support") || b.ringTimeout() != 5*time.Second {
		t.Fatal("before a reload Config is in force")
	}
	b.SetAccounts(map[string]bool{"support": true})
	b.SetRingTimeout(9 * time.Second)
	b.SetAccounts(map[string]bool{"support": true, "sales2": true})
	if b.isAccount("sales1") || !b.isAccount("support") || !b.isAccount("sales2") {
		t.Fatal("the reloaded accounts are not in force")
	}
	if b.ringTimeout() != 9*time.Second {
		t.Fatalf("ring timeout %s, want the reloaded 9s", b.ringTimeout())
	}
	b.SetRingTimeout(0)
	if b.ringTimeout() != 30*time.Second {
		t.Fatalf("ring timeout %s, want the default 30s", b.ringTimeout())
	}
}
