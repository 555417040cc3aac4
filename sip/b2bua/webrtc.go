package b2bua

// Browser phones (SIP over WebSocket) speak WebRTC: ICE, DTLS-SRTP and
// rtcp-mux in an SDP of their own. A WebRTCLeg stands between such a
// party and the relay, and the B2BUA translates that party's SDP at each
// crossing, so everything else (the relay session, the other leg, the
// call's logic) sees a plain RTP phone.

import (
	"errors"

	"callgate/sip/sipnet"

	"github.com/emiago/sipgo/sip"
)

// WebRTCLeg is a browser's media in one dialog (media/webrtc).
type WebRTCLeg interface {
	// FromBrowser turns the browser's SDP (an offer or an answer) into a
	// plain RTP SDP of the leg's own socket toward the relay.
	FromBrowser(body []byte) ([]byte, error)
	// ToBrowser turns a plain SDP callgate would send a phone (its address
	// the relay's) into the browser's WebRTC SDP.
	ToBrowser(body []byte) ([]byte, error)
	// Failed is closed when the browser's ICE or DTLS fails.
	Failed() <-chan struct{}
	Close()
}

// WebRTCLegs adapts a constructor of a concrete leg type for
// Config.NewWebRTCLeg.
func WebRTCLegs[L WebRTCLeg](newLeg func() (L, error)) func() (WebRTCLeg, error) {
	return func() (WebRTCLeg, error) {
		l, err := newLeg()
		if err != nil {
			return nil, err
		}
		return l, nil
	}
}

// CallHeader names the call in an INVITE to a browser phone, so the
// console shows its ringing on the call's card (the id of the API and the
// live events).
const CallHeader = "X-Callgate-Call"

// errNoWebRTC refuses a browser's call when browser phones are off.
var errNoWebRTC = errors.New("browser phones (WebRTC) are not enabled")

// overHTTP reports whether a transport name is a browser's (WebSocket).
func overHTTP(transport string) bool { return sipnet.TransportOf(transport).OverHTTP() }

// newWebLeg makes a WebRTC leg for one of the call's dialogs; it ends with
// the call, and a failed one ends the call at once.
func (c *call) newWebLeg() (WebRTCLeg, error) {
	if c.b.cfg.NewWebRTCLeg == nil {
		return nil, errNoWebRTC
	}
	l, err := c.b.cfg.NewWebRTCLeg()
	if err != nil {
		return nil, err
	}
	c.webLegs = append(c.webLegs, l)
	go func() {
		select {
		case <-l.Failed():
			// Only a party still in the call ends it: a browser transferred
			// away closes its media when it gets its BYE.
			c.post(func() {
				if c.webInCall(l) {
					c.hangup("timeout", "browser media failed (ICE or DTLS)")
				}
			})
		case <-c.closed:
		}
	}()
	return l, nil
}

// webInCall reports whether l is the media of one of the call's two
// parties now.
func (c *call) webInCall(l WebRTCLeg) bool {
	if c.ended {
		return false
	}
	if w := c.webOf(c.callerLeg); w == l {
		return true
	}
	return c.callee != nil && c.callee.sess != nil && c.webOf(c.callee.sess) == l
}

// dropWeb ends the media of a browser's dialog that left the call.
func (c *call) dropWeb(leg dialogLeg) {
	if w := c.webOf(leg); w != nil {
		w.Close()
		delete(c.web, leg)
	}
}

// webOf is the WebRTC leg of a dialog (nil: not a browser's).
func (c *call) webOf(leg dialogLeg) WebRTCLeg {
	if leg == nil || c.web == nil {
		return nil
	}
	return c.web[leg]
}

// setWeb records that a dialog is a browser's.
func (c *call) setWeb(leg dialogLeg, w WebRTCLeg) {
	if c.web == nil {
		c.web = map[dialogLeg]WebRTCLeg{}
	}
	c.web[leg] = w
}

// closeWebLegs ends the call's browser media.
func (c *call) closeWebLegs() {
	for _, l := range c.webLegs {
		l.Close()
	}
	c.webLegs = nil
}

// toBrowser translates an SDP callgate sends to a dialog (unchanged for
// any but a browser's).
func (c *call) toBrowser(leg dialogLeg, body []byte) ([]byte, error) {
	w := c.webOf(leg)
	if w == nil || len(body) == 0 {
		return body, nil
	}
	return w.ToBrowser(body)
}

// fromBrowserAnswer translates the SDP of a browser's answer in place, so
// every reader of the response sees plain RTP; an SDP that cannot be used
// is removed, which fails the answer like a phone's unreadable SDP.
func fromBrowserAnswer(w WebRTCLeg, res *sip.Response) {
	if w == nil || res == nil || len(res.Body()) == 0 {
		return
	}
	plain, err := w.FromBrowser(res.Body())
	if err != nil {
		plain = nil
	}
	res.SetBody(plain)
}

// browserWarning explains a 488 to a browser whose SDP callgate cannot use.
func browserWarning(err error) []sip.Header {
	return []sip.Header{sip.NewHeader("Warning", `399 callgate "`+sanitizeWarning(err.Error())+`"`)}
}

func sanitizeWarning(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r == '"' || r == '\\' || r < 0x20 {
			r = ' '
		}
		out = append(out, r)
	}
	return string(out)
}
