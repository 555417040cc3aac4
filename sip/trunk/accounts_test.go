package trunk

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"callgate/sip/digest"
	"callgate/sip/sipnet"

	"github.com/emiago/sipgo/sip"
)

// vpbx is a registrar for several accounts whose passwords and refusals
// the test changes; it keeps each account's bindings as a VPBX would.
type vpbx struct {
	mu        sync.Mutex
	auth      *digest.Server
	passwords vpbxSecrets
	forbidden map[string]bool
	bound     map[string]bool // account -> has a binding
	log       []string        // "user expires auth-ok" per REGISTER
}

func newVPBX(passwords map[string]string) *vpbx {
	return &vpbx{auth: digest.NewServer("vpbx", []digest.Algorithm{digest.MD5}, time.Minute), passwords: passwords,
		forbidden: map[string]bool{}, bound: map[string]bool{}}
}

func (v *vpbx) send(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	user := req.From().Address.User
	if v.forbidden[user] {
		return sip.NewResponseFromRequest(req, 403, "Forbidden", nil), nil
	}
	auth := ""
	if h := req.GetHeader("Authorization"); h != nil {
		auth = h.Value()
	}
	if _, r := v.auth.Verify("REGISTER", auth, uint64(req.CSeq().SeqNo), v.passwords); r != digest.OK {
		res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
		res.AppendHeader(sip.NewHeader("WWW-Authenticate", v.auth.Challenges(r == digest.Stale)[0]))
		return res, nil
	}
	expires := req.GetHeader("Expires").Value()
	v.bound[user] = expires != "0"
	v.log = append(v.log, user+" "+expires)
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Contact", req.Contact().Value()+";expires="+strconv.Itoa(60)))
	return res, nil
}

func (v *vpbx) has(user string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.bound[user]
}

func (v *vpbx) registers(user string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, l := range v.log {
		if l == user+" 60" || l == user+" 300" {
			n++
		}
	}
	return n
}

func (v *vpbx) set(fn func()) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fn()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func state(tr *Trunk, user string) State {
	for _, s := range tr.Statuses() {
		if s.Account == user {
			return s.State
		}
	}
	return ""
}

// SetAccounts registers a new account at once and unregisters a removed
// one, leaves an unchanged one alone, registers a changed one again with
// its new password, and tries again one the VPBX refused with 403.
func TestSetAccountsRegistersAndUnregisters(t *testing.T) {
	v := newVPBX(map[string]string{"sales1": "Secret123", "support": "Secret456", "extra": "Secret789", "shop": "Shop-1"})
	v.forbidden["shop"] = true
	cfg := Config{Upstream: newUpstream("127.0.0.1:5070"), Domain: "vpbx1.mangosip.ru", Contacts: map[sipnet.Transport]string{sipnet.UDP: "127.0.0.1:5060"},
		Failover: 100 * time.Millisecond, Recheck: 50 * time.Millisecond,
		Expires: 300 * time.Second, Timeout: 200 * time.Millisecond, RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond}
	tr := New(cfg, v.send, []Account{{User: "sales1", Password: "Secret123"}, {User: "support", Password: "Secret456"}, {User: "shop", Password: "Shop-1"}},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	eventually(t, "sales1 and support registered, shop refused", func() bool {
		return tr.Registered("sales1") && tr.Registered("support") && state(tr, "shop") == StateForbidden
	})
	before := v.registers("sales1")

	v.set(func() { v.passwords["support"] = "Changed-456"; v.forbidden["shop"] = false })
	tr.SetAccounts([]Account{{User: "sales1", Password: "Secret123"}, {User: "shop", Password: "Shop-1"},
		{User: "support", Password: "Changed-456"}, {User: "extra", Password: "Secret789"}})

	eventually(t, "extra registered", func() bool { return tr.Registered("extra") && v.has("extra") })
	eventually(t, "shop tried again after its 403", func() bool { return tr.Registered("shop") })
	eventually(t, "support registered with its new password", func() bool { return v.registers("support") >= 2 })
	if got := v.registers("sales1"); got != before {
		t.Fatalf("sales1 registered %d more times: an unchanged account was touched", got-before)
	}
	var order []string
	for _, s := range tr.Statuses() {
		order = append(order, s.Account)
	}
	if want := "sales1 shop support extra"; strings.Join(order, " ") != want {
		t.Fatalf("statuses in order %v, want %s", order, want)
	}

	tr.SetAccounts([]Account{{User: "sales1", Password: "Secret123"}, {User: "extra", Password: "Secret789"}})
	eventually(t, "support and shop unregistered", func() bool { return !v.has("support") && !v.has("shop") })
	if tr.Registered("support") || len(tr.Statuses()) != 2 {
		t.Fatalf("a removed account still shows: %+v", tr.Statuses())
	}
	if !v.has("sales1") || !v.has("extra") {
		t.Fatal("an account that stays lost its binding")
	}

	// Removed and added back in one go: the old registration's unregister
	// must not remove the new one's binding.
	tr.SetAccounts([]Account{{User: "sales1", Password: "Secret123"}})
	tr.SetAccounts([]Account{{User: "sales1", Password: "Secret123"}, {User: "extra", Password: "Secret789"}})
	eventually(t, "extra registered again", func() bool { return tr.Registered("extra") })
	time.Sleep(100 * time.Millisecond)
	if !v.has("extra") {
		t.Fatal("extra lost its binding to its own unregister")
	}
	cancel()
	<-done
	if v.has("sales1") || v.has("extra") {
		t.Fatal("stopping did not unregister")
	}
}

// Before Run, SetAccounts only changes what Run starts.
func TestSetAccountsBeforeRun(t *testing.T) {
	v := newVPBX(map[string]string{"sales1": "Secret123", "support": "Secret456"})
	cfg := Config{Upstream: newUpstream("127.0.0.1:5070"), Domain: "vpbx1.mangosip.ru", Contacts: map[sipnet.Transport]string{sipnet.UDP: "127.0.0.1:5060"},
		Failover: 100 * time.Millisecond, Recheck: 50 * time.Millisecond,
		Expires: 300 * time.Second, Timeout: 200 * time.Millisecond, RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond}
	tr := New(cfg, v.send, []Account{{User: "sales1", Password: "wrong"}}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	tr.SetAccounts([]Account{{User: "sales1", Password: "Secret123"}, {User: "support", Password: "Secret456"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tr.Run(ctx)
	eventually(t, "both registered", func() bool { return tr.Registered("sales1") && tr.Registered("support") })
}
