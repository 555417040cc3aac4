package b2bua

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// In-dialog requests are matched as RFC 3261 §12.2.2 says: the Call-ID and
// both tags must name a dialog callgate holds (the request's To-tag is our
// local tag, its From-tag the remote's), and the request must come from the
// peer of that leg. Matching on the Call-ID alone let anyone on the LAN who
// saw or guessed one end or transfer a call.

// releasedFor is how long a released dialog still takes a BYE: 32 s is
// 64*T1, the time a UAS keeps a transaction's state, long enough for a BYE
// that crossed ours (RFC 5589 §6: a transferor hanging up as its transfer
// completes).
const releasedFor = 32 * time.Second

// releasedMax bounds the released-dialog table; the oldest go first.
const releasedMax = 4096

// loggedMax bounds the per-source log limiter.
const loggedMax = 1024

// dialogPeer is who may send requests in a dialog.
type dialogPeer struct {
	// upstream: the VPBX, from any of Config.Trusted.
	upstream bool
	// addrs: a phone, from the address its INVITE or 200 came from or the
	// one callgate sent its INVITE to (the registered source). Over TCP
	// that is the connection's far end.
	addrs []netip.AddrPort
}

// dialogEntry is one dialog of a call leg.
type dialogEntry struct {
	callID string
	local  string // our tag
	remote string // the peer's tag; empty until it answers
	peer   dialogPeer
	at     time.Time // when it was released
}

// dialogTable holds the dialogs of live and recently released legs; its
// maps are guarded by B2BUA.mu.
type dialogTable struct {
	live     map[string]*dialogEntry // by Call-ID
	released map[string]*dialogEntry // by Call-ID
	order    []*dialogEntry          // released, oldest first

	mismatches atomic.Uint64

	logMu  sync.Mutex
	logged map[netip.Addr]time.Time // last warning per source
}

// DialogMismatches counts in-dialog requests refused with 481 because they
// named no dialog callgate holds, or came from someone else than its peer.
func (b *B2BUA) DialogMismatches() uint64 { return b.dlg.mismatches.Load() }

// tagOf is the tag parameter of a From or To header's parameters.
func tagOf(params sip.HeaderParams) string {
	t, _ := params.Get("tag")
	return t
}

// requestTags are a request's From and To tags, nil-safe.
func requestTags(req *sip.Request) (from, to string) {
	if f := req.From(); f != nil {
		from = tagOf(f.Params)
	}
	if t := req.To(); t != nil {
		to = tagOf(t.Params)
	}
	return from, to
}

// sourceOf is a message's source address, unmapped ("" on a bad address).
func sourceOf(m interface{ Source() string }) netip.AddrPort {
	ap, err := netip.ParseAddrPort(m.Source())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// phonePeer is a phone reached at or heard from addrs.
func phonePeer(addrs ...string) dialogPeer {
	var p dialogPeer
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			continue
		}
		p.addrs = append(p.addrs, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	return p
}

// trackDialog records the dialog of a leg being bound to a call.
func (b *B2BUA) trackDialog(callID, local, remote string, peer dialogPeer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dlg.live == nil {
		b.dlg.live = map[string]*dialogEntry{}
	}
	b.dlg.live[callID] = &dialogEntry{callID: callID, local: local, remote: remote, peer: peer}
}

// dialogAnswered completes a dialog callgate started with the tag of the
// 2xx and the address it came from. A provisional response with a tag
// sets up the early dialog (a VPBX may send INFO while it rings) unless
// one is already set; the 2xx has the last word.
func (b *B2BUA) dialogAnswered(callID string, res *sip.Response) {
	remote := ""
	if t := res.To(); t != nil {
		remote = tagOf(t.Params)
	}
	if remote == "" {
		return
	}
	src := sourceOf(res)
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.dlg.live[callID]
	if d == nil || (res.IsProvisional() && d.remote != "") {
		return
	}
	d.remote = remote
	if !d.peer.upstream && src.IsValid() && !slices.Contains(d.peer.addrs, src) {
		d.peer.addrs = append(d.peer.addrs, src)
	}
}

// releaseDialogLocked moves a leg's dialog to the released table; b.mu is
// held.
func (b *B2BUA) releaseDialogLocked(callID string, now time.Time) {
	d := b.dlg.live[callID]
	if d == nil {
		return
	}
	delete(b.dlg.live, callID)
	b.pruneReleasedLocked(now)
	if d.remote == "" {
		return // never answered: no request can name it
	}
	if b.dlg.released == nil {
		b.dlg.released = map[string]*dialogEntry{}
	}
	d.at = now
	b.dlg.released[callID] = d
	b.dlg.order = append(b.dlg.order, d)
	if len(b.dlg.order) > releasedMax {
		b.dropOldestLocked()
	}
}

func (b *B2BUA) dropOldestLocked() {
	old := b.dlg.order[0]
	b.dlg.order[0] = nil
	b.dlg.order = b.dlg.order[1:]
	if b.dlg.released[old.callID] == old {
		delete(b.dlg.released, old.callID)
	}
}

// pruneReleasedLocked forgets released dialogs older than releasedFor.
func (b *B2BUA) pruneReleasedLocked(now time.Time) {
	for len(b.dlg.order) > 0 && now.Sub(b.dlg.order[0].at) >= releasedFor {
		b.dropOldestLocked()
	}
}

// matchKind is what a request's dialog turned out to be.
type matchKind int

const (
	matchNone     matchKind = iota // no dialog: 481
	matchLive                      // a live leg of a call
	matchReleased                  // a leg released in the last releasedFor
)

// dialogOf matches an in-dialog request to a dialog by Call-ID, both tags
// and the sender. On matchNone, why says what did not match.
func (b *B2BUA) dialogOf(req *sip.Request) (c *call, d *dialogEntry, kind matchKind, why string) {
	cid := req.CallID()
	if cid == nil || cid.Value() == "" {
		return nil, nil, matchNone, "no Call-ID"
	}
	callID := cid.Value()
	fromTag, toTag := requestTags(req)
	src := sourceOf(req)
	b.mu.Lock()
	defer b.mu.Unlock()
	d, kind = b.dlg.live[callID], matchLive
	c = b.legs[callID]
	if d == nil || c == nil {
		b.pruneReleasedLocked(time.Now())
		d, kind, c = b.dlg.released[callID], matchReleased, nil
	}
	switch {
	case d == nil:
		return nil, nil, matchNone, "unknown dialog"
	case toTag == "" || toTag != d.local:
		return nil, nil, matchNone, "To-tag does not match"
	case fromTag == "" || fromTag != d.remote:
		return nil, nil, matchNone, "From-tag does not match"
	case !b.fromPeer(d.peer, src):
		return nil, nil, matchNone, "not from the dialog's peer"
	}
	return c, d, kind, ""
}

// fromPeer says whether src may send requests in a dialog with peer.
func (b *B2BUA) fromPeer(peer dialogPeer, src netip.AddrPort) bool {
	if !src.IsValid() {
		return false
	}
	if peer.upstream {
		return b.trusted(src.String())
	}
	for _, a := range peer.addrs {
		if a == src {
			return true
		}
	}
	return false
}

// stillBound says whether d is still a live leg of c (a request matched on
// arrival may reach the call after the leg left it, e.g. a transferor's
// BYE crossing the one that released it).
func (b *B2BUA) stillBound(c *call, d *dialogEntry) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.legs[d.callID] == c && b.dlg.live[d.callID] == d
}

// answerReleased answers a request in a dialog that is gone: a BYE gets
// 200 (the peer hung up as we did), anything else 481; ACK nothing.
func answerReleased(req *sip.Request, tx sip.ServerTransaction) {
	switch {
	case req.IsAck():
	case req.Method == sip.BYE:
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	default:
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
	}
}

// refuseInDialog answers 481 to a request that matched no dialog, counts
// it and warns once per source and minute. An ACK is only dropped: the ACK
// to a 407 or another final error carries that response's To-tag and can
// reach us outside its transaction (over TCP sipgo passes it on), and a
// stray ACK changes nothing.
func (b *B2BUA) refuseInDialog(req *sip.Request, tx sip.ServerTransaction, why string) {
	if req.IsAck() {
		return
	}
	b.dlg.mismatches.Add(1)
	src := sourceOf(req)
	if b.dlg.shouldLog(src.Addr(), time.Now()) {
		callID := ""
		if cid := req.CallID(); cid != nil {
			callID = cid.Value()
		}
		b.log.Warn("in-dialog request refused: no such dialog", "source", req.Source(), "call_id", callID,
			"method", string(req.Method), "reason", why)
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
}

// shouldLog limits mismatch warnings to one per source and minute.
func (t *dialogTable) shouldLog(ip netip.Addr, now time.Time) bool {
	t.logMu.Lock()
	defer t.logMu.Unlock()
	if last, ok := t.logged[ip]; ok && now.Sub(last) < time.Minute {
		return false
	}
	if t.logged == nil {
		t.logged = map[netip.Addr]time.Time{}
	}
	if len(t.logged) >= loggedMax {
		for k, at := range t.logged {
			if now.Sub(at) >= time.Minute {
				delete(t.logged, k)
			}
		}
		if len(t.logged) >= loggedMax {
			return false // a flood from many sources: the counter still sees it
		}
	}
	t.logged[ip] = now
	return true
}

// callLeg is which of a call's dialogs a request came in.
type callLeg int

const (
	legNone   callLeg = iota // bound to the call but not one of its parties (yet)
	legCaller                // the dialog that created the call
	legCallee                // the connected callee
	legTarget                // an attended transfer's consultation target
)

// legOf names the dialog of c that callID belongs to now.
func (c *call) legOf(callID string) callLeg {
	switch {
	case callID == c.callerCallID:
		return legCaller
	case c.callee != nil && c.callee.sess != nil && callID == c.callee.sess.InviteRequest.CallID().Value():
		return legCallee
	case c.consult != nil && c.consult.target != nil && callID == c.consult.target.sess.InviteRequest.CallID().Value():
		return legTarget
	}
	return legNone
}

// ownsReplaced says whether the dialog a REFER's Replaces names
// ("call-id;to-tag=..;from-tag=..") is one the REFER's sender holds with
// callgate: same peer, and the tags if given (either way round: phones
// disagree on whose view the tags are in).
func (b *B2BUA) ownsReplaced(replaces string, src netip.AddrPort) (string, bool) {
	parts := strings.Split(replaces, ";")
	callID := strings.TrimSpace(parts[0])
	var tags []string
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "to-tag") || strings.EqualFold(k, "from-tag") {
			tags = append(tags, v)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.dlg.live[callID]
	if d == nil || callID == "" {
		return callID, false
	}
	if len(tags) == 2 && !(tags[0] == d.local && tags[1] == d.remote) && !(tags[0] == d.remote && tags[1] == d.local) {
		return callID, false
	}
	return callID, b.fromPeer(d.peer, src)
}
