package b2bua

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/pion/sdp/v3"
)

// OriginClickToCall marks calls placed through the API.
const OriginClickToCall = "click-to-call"

// ClickToCall is a call callgate places itself: ring the employee's phone
// first, and once it is answered dial the client upstream and bridge the two
// (the B2BUA flow PBXs use: Asterisk Originate, FreeSWITCH originate+bridge).
type ClickToCall struct {
	Line  Target        // the employee's line to ring
	Route OutboundRoute // account and number toward the VPBX
	// Outside is the client's number as shown on the phone (E.164).
	Outside string
	// Display is the caller name the phone shows, saying the call is an
	// outgoing one.
	Display string
	// RingTimeout is how long the employee's phone rings (0: the default).
	RingTimeout time.Duration
}

// ErrNotRegistered means the line has no registered device.
var ErrNotRegistered = errors.New("no registered phone on this line")

// c2cState is a click-to-call's state beyond an ordinary call's.
type c2cState struct {
	ringback  func()
	cancelled bool // hung up through the API while the employee's phone rang
}

func (s *c2cState) stopRingback() {
	if s.ringback != nil {
		s.ringback()
		s.ringback = nil
	}
}

// ClickToCall starts a click-to-call and returns its call id at once; its
// progress arrives as events like any call's.
func (b *B2BUA) ClickToCall(r ClickToCall) (string, error) {
	if !b.begin() {
		endLease(r.Route.Lease)
		return "", ErrShuttingDown
	}
	c, err := b.newClickToCall(r)
	if err != nil {
		endLease(r.Route.Lease)
		b.wg.Done()
		return "", err
	}
	c.hold(r.Route.Lease)
	go func() {
		defer b.wg.Done()
		defer c.recoverPanic()
		c.runClickToCall(r)
	}()
	return c.id, nil
}

func (b *B2BUA) newClickToCall(r ClickToCall) (*call, error) {
	bindings := b.loc.Lookup(r.Line.Extension, time.Now())
	if len(bindings) == 0 {
		return nil, ErrNotRegistered
	}
	c := &call{b: b, id: uuid.NewString(), inbox: make(chan func(), 16), closed: make(chan struct{}), c2c: &c2cState{}}
	c.ev = Event{CallID: c.id, Direction: Outbound, Origin: OriginClickToCall, Account: r.Route.Account.User,
		Outside: r.Route.Number, Caller: r.Line.Extension}
	c.callerSide, c.calleeSide = SideB, SideA
	c.callerIP = b.cfg.PhoneMediaIP
	ms, err := b.media.Open(c.id)
	if err != nil {
		return nil, fmt.Errorf("click-to-call media: %w", err)
	}
	c.media = ms
	c.ev.Media = ms
	b.mu.Lock()
	b.byID[c.id] = c
	b.mu.Unlock()
	return c, nil
}

// localOffer is callgate's own SDP offer for the port facing side.
func localOffer(ip netip.Addr, port int, version uint64) []byte {
	ipv := "IP4"
	if ip.Is6() {
		ipv = "IP6"
	}
	return fmt.Appendf(nil, "v=0\r\no=callgate %d %d IN %s %s\r\ns=callgate\r\nc=IN %s %s\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"+
		"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
		version, version, ipv, ip, ipv, ip, port)
}

// firstG711 is the first of PCMA/PCMU in an answer's audio formats.
func firstG711(s *sdp.SessionDescription) uint8 {
	for _, m := range s.MediaDescriptions {
		if m.MediaName.Media != "audio" {
			continue
		}
		for _, f := range m.MediaName.Formats {
			switch strings.TrimSpace(f) {
			case "8":
				return 8
			case "0":
				return 0
			}
		}
	}
	return 8
}

func (c *call) runClickToCall(r ClickToCall) {
	b := c.b
	timeout := r.RingTimeout
	if timeout <= 0 {
		timeout = b.ringTimeout()
	}
	// Ring the employee's line: every device registered on it.
	c.ev.Rung = []Target{r.Line}
	results := make(chan branchResult, 16)
	branches, _ := c.dialPhones([]Target{r.Line}, strings.TrimPrefix(r.Outside, "+"), r.Display, func(br *branch) ([]byte, error) {
		return localOffer(b.cfg.PhoneMediaIP, c.media.Port(SideB), br.ver.next()), nil
	}, results)
	if len(branches) == 0 {
		c.ev.Result, c.ev.HangupBy, c.ev.Reason = ResultFailed, "system", "no registered phone"
		c.finish()
		return
	}
	c.emit(EventRinging)
	phone := c.awaitEmployee(branches, results, timeout)
	if phone == nil {
		return // awaitEmployee ended the call
	}
	// The employee answered: their phone's dialog is the call's caller side.
	sess := phone.sess
	c.callerLeg = sess
	c.callerCallID = sess.InviteRequest.CallID().Value()
	if ct := sess.InviteResponse.Contact(); ct != nil {
		c.callerContact = ct.Address
	}
	c.callerVer = phone.ver
	answer, m, err := parseSDP(sess.InviteResponse.Body())
	if err != nil {
		_ = sess.Ack(bg())
		c.ev.Reason = "phone SDP: " + err.Error()
		c.hangupEmployee(ResultFailed)
		return
	}
	c.media.SetRemote(SideB, m.addr)
	if err := sess.Ack(bg()); err != nil {
		b.log.Warn("ack failed", "call_id", c.id, "error", err)
	}
	c.c2c.ringback = c.media.Ringback(SideB, firstG711(answer))
	// Now dial the client with what the phone agreed to.
	c.dialClient(r.Route, answer)
}

// awaitEmployee waits for the employee's phone to answer; nil means the
// attempt ended (no answer, refused, cancelled through the API).
func (c *call) awaitEmployee(branches []*branch, results chan branchResult, timeout time.Duration) *branch {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	pending := len(branches)
	stopped := func(result, reason string) *branch {
		c.stopRinging(branches, nil, results, pending)
		c.ev.Result, c.ev.HangupBy, c.ev.Reason = result, "employee", reason
		c.finish()
		return nil
	}
	refused := 0
	for pending > 0 {
		select {
		case fn := <-c.inbox:
			fn()
			if c.c2c.cancelled {
				return stopped(ResultAbandoned, "cancelled through the API")
			}
		case <-timer.C:
			return stopped(ResultNoAnswer, "the employee did not answer")
		case r := <-results:
			if !r.end {
				continue
			}
			pending--
			if !c.branchEnded(r) {
				if refusedStatus(r.br.final) {
					refused++
				}
				continue
			}
			c.stopRinging(branches, r.br, results, pending)
			return r.br
		}
	}
	if refused > 0 {
		return stopped(ResultBusy, "the employee's phone refused the call")
	}
	return stopped(ResultNoAnswer, "the employee's phone did not answer")
}

// dialClient places the upstream leg of a click-to-call and connects it.
func (c *call) dialClient(route OutboundRoute, phoneAnswer *sdp.SessionDescription) {
	b := c.b
	br := &branch{target: Target{Extension: c.ev.Caller, Employee: route.Employee}, mediaIP: b.cfg.UpstreamMedia}
	body, err := rewriteSDP(phoneAnswer, br.mediaIP, c.media.Port(SideA), br.ver.next())
	if err != nil {
		c.ev.Reason = err.Error()
		c.hangupEmployee(ResultFailed)
		return
	}
	results := make(chan branchResult, 64)
	if err := c.inviteUpstream(br, route, body, results); err != nil {
		c.ev.Reason = "upstream: " + err.Error()
		c.hangupEmployee(ResultFailed)
		return
	}
	won, _ := c.await([]*branch{br}, results, 4*b.ringTimeout())
	if won && route.Lease != nil {
		route.Lease.Answered()
	}
	if won || c.ended {
		return
	}
	c.ev.Reason = "upstream answered " + itoa(br.final)
	c.ev.HangupBy = "outside"
	c.hangupEmployee(upstreamResult(br.final))
}

// hangupEmployee ends a click-to-call whose client leg did not connect.
func (c *call) hangupEmployee(result string) {
	c.ev.Result = result
	if c.ev.HangupBy == "" {
		c.ev.HangupBy = "system"
	}
	c.c2c.stopRingback()
	ctx, cancel := context.WithTimeout(bg(), 5*time.Second)
	_ = c.callerLeg.Bye(ctx)
	cancel()
	c.finish()
}
