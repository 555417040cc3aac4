package siptest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// RawRequest is an in-dialog request written by hand: a test sends it as
// the dialog's party would, or forges it (wrong tags, another address) the
// way an attacker on the LAN would.
type RawRequest struct {
	Method  string
	Target  string // request URI, e.g. sip:callgate@127.0.0.1:5060
	CallID  string
	FromTag string // the sender's tag
	ToTag   string // the receiver's tag
	CSeq    uint32
	// Headers are more "Name: value" lines (Refer-To, Contact...).
	Headers []string
	Body    []byte
}

// Raw is a request in c's dialog as this side would send it to server
// (callgate's IP:port): From carries this side's tag, To the other's.
func (c *Call) Raw(method, server string) RawRequest {
	callID, local, remote := c.Tags()
	cseq := uint32(1000)
	if c.server != nil {
		cseq += c.server.CSEQ()
	} else {
		cseq += c.client.CSEQ()
	}
	return RawRequest{Method: method, Target: "sip:" + server, CallID: callID, FromTag: local, ToTag: remote, CSeq: cseq}
}

// Tags are the dialog's Call-ID, this side's tag and the other side's.
func (c *Call) Tags() (callID, local, remote string) {
	if c.server != nil {
		return c.server.InviteRequest.CallID().Value(), toTag(c.server.InviteResponse), fromTag(c.server.InviteRequest)
	}
	return c.client.InviteRequest.CallID().Value(), fromTag(c.client.InviteRequest), toTag(c.client.InviteResponse)
}

// Bytes is the request on the wire, with a Via for sentBy (IP:port,
// transport UDP or TCP).
func (r RawRequest) Bytes(transport, sentBy string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", r.Method, r.Target)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s;branch=%s;rport\r\n", strings.ToUpper(transport), sentBy, sip.GenerateBranch())
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:test@%s>%s\r\n", sentBy, tagParam(r.FromTag))
	fmt.Fprintf(&b, "To: <%s>%s\r\n", r.Target, tagParam(r.ToTag))
	fmt.Fprintf(&b, "Call-ID: %s\r\n", r.CallID)
	fmt.Fprintf(&b, "CSeq: %d %s\r\n", r.CSeq, r.Method)
	fmt.Fprintf(&b, "Contact: <sip:test@%s>\r\n", sentBy)
	for _, h := range r.Headers {
		b.WriteString(h + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(r.Body))
	b.Write(r.Body)
	return []byte(b.String())
}

func tagParam(tag string) string {
	if tag == "" {
		return ""
	}
	return ";tag=" + tag
}

// SendUDP sends r from a new socket bound to local (e.g. "127.0.0.2:0")
// to dst and returns the status of the final response; 0 if none came
// within timeout.
func SendUDP(local, dst string, r RawRequest, timeout time.Duration) (int, error) {
	pc, err := net.ListenPacket("udp", local)
	if err != nil {
		return 0, fmt.Errorf("raw request: %w", err)
	}
	defer pc.Close()
	to, err := net.ResolveUDPAddr("udp", dst)
	if err != nil {
		return 0, fmt.Errorf("raw request: %w", err)
	}
	if _, err := pc.WriteTo(r.Bytes("UDP", pc.LocalAddr().String()), to); err != nil {
		return 0, fmt.Errorf("raw request: %w", err)
	}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65535)
	for {
		_ = pc.SetReadDeadline(deadline)
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return 0, nil // no answer
		}
		m, err := sip.ParseMessage(buf[:n])
		if err != nil {
			continue
		}
		if res, ok := m.(*sip.Response); ok && res.StatusCode >= 200 {
			return res.StatusCode, nil
		}
	}
}

// Send sends r from the phone's own socket (its registered source) through
// its SIP stack and returns the final response: what the phone itself
// would send, e.g. a BYE crossing one it received.
func (p *Phone) Send(ctx context.Context, r RawRequest) (*sip.Response, error) {
	var uri sip.Uri
	if err := sip.ParseUri(r.Target, &uri); err != nil {
		return nil, fmt.Errorf("send %s: %w", r.Method, err)
	}
	req := sip.NewRequest(sip.RequestMethod(r.Method), uri)
	req.SetTransport(strings.ToUpper(p.cfg.Transport))
	req.SetDestination(p.cfg.Server)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: p.cfg.User, Host: p.cfg.Domain}, Params: sip.NewParams()}
	if r.FromTag != "" {
		from.Params.Add("tag", r.FromTag)
	}
	req.AppendHeader(from)
	to := &sip.ToHeader{Address: uri, Params: sip.NewParams()}
	if r.ToTag != "" {
		to.Params.Add("tag", r.ToTag)
	}
	req.AppendHeader(to)
	cid := sip.CallIDHeader(r.CallID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: r.CSeq, MethodName: sip.RequestMethod(r.Method)})
	req.AppendHeader(&p.contact)
	for _, h := range r.Headers {
		name, value, _ := strings.Cut(h, ":")
		req.AppendHeader(sip.NewHeader(strings.TrimSpace(name), strings.TrimSpace(value)))
	}
	req.SetBody(r.Body)
	res, err := p.client.Do(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("send %s: %w", r.Method, err)
	}
	return res, nil
}

// SendTCP sends r over a new TCP connection to dst and returns the status
// of the final response; 0 if none came within timeout.
func SendTCP(dst string, r RawRequest, timeout time.Duration) (int, error) {
	conn, err := net.DialTimeout("tcp", dst, timeout)
	if err != nil {
		return 0, fmt.Errorf("raw request: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(r.Bytes("TCP", conn.LocalAddr().String())); err != nil {
		return 0, fmt.Errorf("raw request: %w", err)
	}
	rd := bufio.NewReader(conn)
	for {
		status, length := 0, 0
		for first := true; ; first = false {
			line, err := rd.ReadString('\n')
			if err != nil {
				return 0, nil // no (final) answer
			}
			line = strings.TrimSpace(line)
			if line == "" {
				break
			}
			if first {
				f := strings.Fields(line)
				if len(f) > 1 {
					status, _ = strconv.Atoi(f[1])
				}
			} else if k, v, ok := strings.Cut(line, ":"); ok && (strings.EqualFold(k, "Content-Length") || k == "l") {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if _, err := rd.Discard(length); err != nil {
			return 0, nil
		}
		if status >= 200 {
			return status, nil
		}
	}
}
