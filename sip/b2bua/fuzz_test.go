package b2bua

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzHandleRequest feeds arbitrary bytes, as they would arrive from the
// network, to the handlers Register installs: new requests (INVITEs from
// the VPBX and from phones) and requests inside a call in progress
// (Call-ID "fuzz-dialog"). Nothing may panic, not even a panic the guard
// would recover, and every request must be done with in bounded time.
// Seeds: testdata/fuzz/FuzzHandleRequest (the crashers of issue 11 and
// well-formed requests) and RFC 4475's torture messages.
func FuzzHandleRequest(f *testing.F) {
	for _, dir := range []string{"../../testdata/fuzz/rfc4475/valid", "../../testdata/fuzz/rfc4475/invalid"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.dat"))
		if err != nil || len(files) == 0 {
			f.Fatalf("no RFC 4475 messages in %s: %v", dir, err)
		}
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	h := newHarness(f, nil)
	h.b.router = fakeRouter{noUpstream: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		live := h.liveCall(t, "fuzz-dialog")
		served := make(chan struct{})
		go func() {
			defer close(served)
			h.serve(data, "127.0.0.1:5070")
		}()
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Fatalf("request not done with after 5 s:\n%q", data)
		}
		if !live.end(5 * time.Second) {
			t.Fatalf("call did not end after:\n%q", data)
		}
		if n := h.b.Panics(); n != 0 {
			t.Fatalf("%d panics recovered handling:\n%q", n, data)
		}
	})
}

// liveCall is a call whose phones ring, for in-dialog requests to reach.
type liveCall struct {
	c       *call
	stopped chan struct{}
}

// liveCall starts a call from the VPBX with Call-ID callID, as runInbound
// would up to ringing; its INVITE transaction is over, so that ending the
// call does not wait for an ACK.
func (h *harness) liveCall(t testing.TB, callID string) *liveCall {
	t.Helper()
	req := parseReq(t, invite(callID))
	tx := newTx(req)
	c, err := h.b.newCall(Inbound, req, tx)
	if err != nil {
		t.Fatal(err)
	}
	tx.Terminate()
	c.callerSide, c.calleeSide = SideA, SideB
	c.callerIP = h.b.cfg.UpstreamMedia
	ms, _ := h.b.media.Open(c.id)
	c.media = ms
	l := &liveCall{c: c, stopped: make(chan struct{})}
	go func() {
		defer close(l.stopped)
		defer c.recoverPanic()
		for !c.ended {
			fn := <-c.inbox
			fn()
		}
	}()
	return l
}

func (l *liveCall) end(timeout time.Duration) bool {
	l.c.post(func() { l.c.hangup("system", "fuzz iteration over") })
	select {
	case <-l.stopped:
		return true
	case <-time.After(timeout):
		return false
	}
}
