package b2bua

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// FuzzInDialog feeds parsed requests to the in-dialog handler holding one
// dialog: nothing panics, every request but ACK is answered, and only the
// exact Call-ID, tags and source pass the match (all else is 481 and
// counted; ACK dropped).
func FuzzInDialog(f *testing.F) {
	msg := func(method, callID, fromTag, toTag string, extra ...string) string {
		s := method + " sip:callgate@127.0.0.1:5060 SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-fz;rport\r\n" +
			"From: <sip:101@127.0.0.1>" + fromTag + "\r\n" +
			"To: <sip:79161234567@127.0.0.1>" + toTag + "\r\n"
		if callID != "" {
			s += "Call-ID: " + callID + "\r\n"
		}
		s += "CSeq: 7 " + method + "\r\nMax-Forwards: 70\r\n" + strings.Join(extra, "")
		return s + "Content-Length: 0\r\n\r\n"
	}
	f.Add(msg("BYE", "fz-1", ";tag=ph-tag", ";tag=cg-tag"), true)
	f.Add(msg("BYE", "fz-1", ";tag=ph-tag", ";tag=cg-tag"), false)
	f.Add(msg("BYE", "fz-1", ";tag=ph-tag", ";tag=guess"), true)
	f.Add(msg("BYE", "fz-1", "", ";tag=cg-tag"), true)
	f.Add(msg("BYE", "", ";tag=ph-tag", ";tag=cg-tag"), true)
	f.Add(msg("INFO", "fz-1", ";TAG=ph-tag", ";tag=cg-tag"), true)
	f.Add(msg("REFER", "fz-1", ";tag=x", ";tag=y", "Refer-To: <sip:+88212345678@127.0.0.1>\r\n"), true)
	f.Add(msg("REFER", "fz-1", ";tag=ph-tag", ";tag=cg-tag", "Refer-To: <sip:103@127.0.0.1?Replaces=fz-1%3Bto-tag%3Dcg-tag>\r\n"), true)
	f.Add(msg("ACK", "fz-1", ";tag=ph-tag", ";tag=cg-tag"), true)
	f.Add(msg("ACK", "other", ";tag=ph-tag", ";tag=cg-tag"), true)
	// RFC 4475-style oddities: compact headers, escaped tags, empty values.
	f.Add("BYE sip:callgate@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=ph-tag\r\nt: <sip:c@d>;tag=cg-tag\r\ni: fz-1\r\nCSeq: 8 BYE\r\nl: 0\r\n\r\n", true)
	f.Add("BYE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\nFrom: ;tag=\r\nTo: ;tag=\r\nCall-ID: \r\nCSeq: 1 BYE\r\n\r\n", true)
	f.Add("BYE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK3\r\nCSeq: 1 BYE\r\n\r\n", false)
	f.Fuzz(func(t *testing.T, data string, fromPhone bool) {
		m, err := sip.ParseMessage([]byte(data))
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		src := "127.0.0.2:5071"
		if fromPhone {
			src = phoneAddr
		}
		req.SetSource(src)
		var logs syncBuffer
		b := newMatchB2BUA(&logs)
		// An ended call: a matched request is answered for it at once.
		c := &call{b: b, id: "fz", inbox: make(chan func()), closed: make(chan struct{})}
		close(c.closed)
		b.trackDialog("fz-1", "cg-tag", "ph-tag", phonePeer(phoneAddr))
		b.bind("fz-1", c)
		tx := &respondTx{}
		b.inDialog(req, tx)

		from, to := requestTags(req)
		cid := req.CallID()
		matched := cid != nil && cid.Value() == "fz-1" && from == "ph-tag" && to == "cg-tag" && fromPhone
		if (matched || req.IsAck()) != (b.DialogMismatches() == 0) {
			t.Fatalf("matched %v but %d mismatches counted", matched, b.DialogMismatches())
		}
		if req.IsAck() {
			if len(tx.res) != 0 {
				t.Fatalf("ACK answered %d", tx.res[0].StatusCode)
			}
			return
		}
		if len(tx.res) != 1 {
			t.Fatalf("%d answers", len(tx.res))
		}
		if !matched && tx.res[0].StatusCode != sip.StatusCallTransactionDoesNotExists {
			t.Fatalf("unmatched request answered %d", tx.res[0].StatusCode)
		}
	})
}
