package siptest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// SDP returns a minimal G.711 audio offer/answer for an RTP address.
func SDP(rtp string) []byte {
	host, port, _ := net.SplitHostPort(rtp)
	return []byte("v=0\r\n" +
		"o=siptest 1 1 IN IP4 " + host + "\r\n" +
		"s=siptest\r\n" +
		"c=IN IP4 " + host + "\r\n" +
		"t=0 0\r\n" +
		"m=audio " + port + " RTP/AVP 8 0 101\r\n" +
		"a=rtpmap:8 PCMA/8000\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\n" +
		"a=fmtp:101 0-16\r\n" +
		"a=sendrecv\r\n")
}

// AnswerSDP is SDP for rtp answering offer as RFC 3264 §6.1 asks: G.711,
// and telephone-event under the payload type the offer gave it.
func AnswerSDP(offer []byte, rtp string) []byte {
	te := "101"
	if pt, ok := TelephoneEvent(offer); ok {
		te = strconv.Itoa(int(pt))
	}
	return []byte(strings.ReplaceAll(string(SDP(rtp)), "101", te))
}

// TelephoneEvent is the payload type an SDP gives RFC 4733 events at
// 8000 Hz, if it has one.
func TelephoneEvent(sdp []byte) (uint8, bool) {
	m := teRTPMap.FindSubmatch(sdp)
	if m == nil {
		return 0, false
	}
	pt, err := strconv.ParseUint(string(m[1]), 10, 7)
	return uint8(pt), err == nil
}

var teRTPMap = regexp.MustCompile(`(?mi)^a=rtpmap:(\d+) telephone-event/8000`)

// IncomingCall is an INVITE waiting for the test's decision.
type IncomingCall struct {
	Request *sip.Request
	dialog  *sipgo.DialogServerSession
	once    sync.Once
	done    chan struct{}
}

func (c *IncomingCall) finish() { c.once.Do(func() { close(c.done) }) }

// From is the caller's user part.
func (c *IncomingCall) From() string { return c.Request.From().Address.User }

// Gone is closed when the caller gives up before an answer (CANCEL) or the
// INVITE transaction ends.
func (c *IncomingCall) Gone() <-chan struct{} { return c.dialog.Context().Done() }

// Progress sends 183 with sdp: early media such as ringback.
func (c *IncomingCall) Progress(sdp []byte) error {
	return c.dialog.Respond(183, "Session Progress", sdp, sip.NewHeader("Content-Type", "application/sdp"))
}

// Ringing sends 180.
func (c *IncomingCall) Ringing() error { return c.dialog.Respond(180, "Ringing", nil) }

// Answer sends 200 with sdp and waits for the ACK.
func (c *IncomingCall) Answer(ctx context.Context, sdp []byte) (*Call, error) {
	defer c.finish()
	states := c.dialog.StateRead() // before answering: the ACK may come at once
	if err := c.dialog.Respond(200, "OK", sdp, sip.NewHeader("Content-Type", "application/sdp")); err != nil {
		return nil, fmt.Errorf("answer: %w", err)
	}
	if c.dialog.LoadState() == sip.DialogStateConfirmed {
		return &Call{server: c.dialog, Remote: c.Request.Body()}, nil
	}
	for {
		select {
		case s := <-states:
			if s == sip.DialogStateConfirmed {
				return &Call{server: c.dialog, Remote: c.Request.Body()}, nil
			}
			if s == sip.DialogStateEnded {
				return nil, fmt.Errorf("answer: dialog ended before ACK")
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("answer: no ACK: %w", ctx.Err())
		}
	}
}

// Reject answers with a final error (e.g. 486 Busy Here, 603 Decline).
func (c *IncomingCall) Reject(code int, reason string) error {
	defer c.finish()
	return c.dialog.Respond(code, reason, nil)
}

// Call is an established dialog, from either side.
type Call struct {
	server *sipgo.DialogServerSession
	client *sipgo.DialogClientSession
	// Remote is the other side's SDP.
	Remote []byte
}

// Done is closed when the dialog ends (BYE in either direction).
func (c *Call) Done() <-chan struct{} {
	if c.server != nil {
		return c.server.Context().Done()
	}
	return c.client.Context().Done()
}

// CallID of the dialog.
func (c *Call) CallID() string {
	if c.server != nil {
		return c.server.InviteRequest.CallID().Value()
	}
	return c.client.InviteRequest.CallID().Value()
}

// Hangup sends BYE.
func (c *Call) Hangup(ctx context.Context) error {
	if c.server != nil {
		return c.server.Bye(ctx)
	}
	return c.client.Bye(ctx)
}

// Refer sends an in-dialog REFER to target (a SIP URI) and returns the
// response code. replaces, if set, is added to Refer-To as a Replaces
// parameter for an attended transfer.
func (c *Call) Refer(ctx context.Context, target string, replaces string) (int, error) {
	req := sip.NewRequest(sip.REFER, c.remoteTarget())
	referTo := "<" + target
	if replaces != "" {
		referTo += "?Replaces=" + strings.NewReplacer(";", "%3B", "=", "%3D", "@", "%40").Replace(replaces)
	}
	req.AppendHeader(sip.NewHeader("Refer-To", referTo+">"))
	var (
		res *sip.Response
		err error
	)
	if c.server != nil {
		res, err = c.server.Do(ctx, req)
	} else {
		res, err = c.client.Do(ctx, req)
	}
	if err != nil {
		return 0, fmt.Errorf("refer: %w", err)
	}
	return res.StatusCode, nil
}

// ReplacesID is the "callid;to-tag=..;from-tag=.." value that identifies
// this dialog in a Replaces header, as seen from this side.
func (c *Call) ReplacesID() string {
	if c.client != nil {
		return c.client.InviteRequest.CallID().Value() + ";to-tag=" + toTag(c.client.InviteResponse) + ";from-tag=" + fromTag(c.client.InviteRequest)
	}
	return c.server.InviteRequest.CallID().Value() + ";to-tag=" + fromTag(c.server.InviteRequest) + ";from-tag=" + toTag(c.server.InviteResponse)
}

func toTag(r *sip.Response) string  { t, _ := r.To().Params.Get("tag"); return t }
func fromTag(r *sip.Request) string { t, _ := r.From().Params.Get("tag"); return t }
func (c *Call) remoteTarget() sip.Uri {
	if c.server != nil {
		return c.server.InviteRequest.Contact().Address
	}
	return c.client.InviteResponse.Contact().Address
}

// Dial calls target (user or full SIP URI) through the phone's server,
// answering a digest challenge, and waits for the answer. A final error
// response is returned as *sipgo.ErrDialogResponse.
func (p *Phone) Dial(ctx context.Context, target string, sdp []byte) (*Call, error) {
	uri := p.serverURI()
	if strings.HasPrefix(target, "sip:") {
		if err := sip.ParseUri(target, &uri); err != nil {
			return nil, err
		}
	} else {
		uri.User = target
	}
	if p.cfg.Transport != "udp" {
		uri.UriParams = sip.NewParams()
		uri.UriParams.Add("transport", p.cfg.Transport)
	}
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: p.cfg.User, Host: p.cfg.Domain}}
	from.Params.Add("tag", sip.GenerateTagN(10))
	s, err := p.dcc.Invite(ctx, uri, sdp, from, sip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	if err := s.WaitAnswer(ctx, sipgo.AnswerOptions{Username: p.cfg.User, Password: p.cfg.Password}); err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	if err := s.Ack(ctx); err != nil {
		return nil, fmt.Errorf("dial %s: ack: %w", target, err)
	}
	return &Call{client: s, Remote: s.InviteResponse.Body()}, nil
}

// MediaAddr reads the audio address (c= and m=audio port) of an SDP body.
func MediaAddr(sdp []byte) (netip.AddrPort, error) {
	var ip netip.Addr
	port := -1
	for _, line := range strings.Split(string(sdp), "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "c=IN IP4 "); ok {
			ip, _ = netip.ParseAddr(strings.TrimSpace(v))
		}
		if v, ok := strings.CutPrefix(line, "m=audio "); ok && port < 0 {
			port, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	if !ip.IsValid() || port <= 0 {
		return netip.AddrPort{}, fmt.Errorf("no audio address in SDP")
	}
	return netip.AddrPortFrom(ip, uint16(port)), nil
}

// ReInvite sends a re-INVITE with sdp (e.g. a=sendonly for hold) in the
// dialog, ACKs a 2xx, and returns the status and the answer SDP.
func (c *Call) ReInvite(ctx context.Context, sdp []byte) (int, []byte, error) {
	req := sip.NewRequest(sip.INVITE, c.remoteTarget())
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(sdp)
	var (
		res *sip.Response
		err error
	)
	if c.server != nil {
		res, err = c.server.Do(ctx, req)
	} else {
		res, err = c.client.Do(ctx, req)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("re-invite: %w", err)
	}
	if res.IsSuccess() {
		ack := sip.NewRequest(sip.ACK, req.Recipient)
		for _, name := range []string{"From", "To", "Call-ID", "Route", "Max-Forwards"} {
			for _, h := range req.GetHeaders(name) {
				ack.AppendHeader(sip.HeaderClone(h))
			}
		}
		ack.AppendHeader(&sip.CSeqHeader{SeqNo: req.CSeq().SeqNo, MethodName: sip.ACK})
		ack.AppendHeader(sip.NewHeader("Content-Length", "0"))
		ack.SetTransport(req.Transport())
		ack.SetDestination(req.Destination())
		ack.Laddr = req.Laddr
		var werr error
		if c.server != nil {
			werr = c.server.WriteRequest(ack)
		} else {
			werr = c.client.WriteRequest(ack)
		}
		if werr != nil {
			return res.StatusCode, res.Body(), fmt.Errorf("re-invite ack: %w", werr)
		}
	}
	return res.StatusCode, res.Body(), nil
}

// HoldSDP is SDP putting the call on hold (sendonly) from rtp.
func HoldSDP(rtp string) []byte {
	return []byte(strings.Replace(string(SDP(rtp)), "a=sendrecv", "a=sendonly", 1))
}

// RemoteContact is the Contact the other side gave for this dialog: of
// its 200 for a call this side placed, of its INVITE for one it answered.
func (c *Call) RemoteContact() *sip.ContactHeader {
	if c.client != nil {
		if c.client.InviteResponse == nil {
			return nil
		}
		return c.client.InviteResponse.Contact()
	}
	return c.server.InviteRequest.Contact()
}
