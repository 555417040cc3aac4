package registrar

import (
	"strings"
	"testing"
	"time"
)

// RFC 5626 §6: a registrar that keeps +sip.instance echoes it, with the
// reg-id, in the Contact of its 200; a phone that does not see it there
// concludes that outbound is not supported (belle-sip: "Refresher has no
// contact").
func TestRegisterEchoesInstanceAndRegID(t *testing.T) {
	r := newTestRegistrar()
	desk := newPhone(t, r, "101", "Phone101pass")
	const inst = "urn:uuid:00000000-0000-1000-8000-00a0c91e6bf6"
	res := desk.register("Contact: <sip:101@10.0.0.5:5060;transport=tcp>;+sip.instance=\"<" + inst + ">\";reg-id=1\r\nExpires: 300\r\n")
	if res == nil || res.StatusCode != 200 {
		t.Fatalf("register: %v", res)
	}
	c := res.GetHeader("Contact")
	if c == nil || !strings.Contains(c.Value(), `+sip.instance="<`+inst+`>"`) || !strings.Contains(c.Value(), ";reg-id=1") {
		t.Fatalf("200 Contact does not echo the instance and reg-id: %v", c)
	}
	// The same device from a new Contact replaces its binding; a second
	// device of the same extension gets its own.
	res = desk.register("Contact: <sip:101@10.0.0.6:5060>;+sip.instance=\"<" + inst + ">\";reg-id=1\r\nExpires: 300\r\n")
	if res.StatusCode != 200 {
		t.Fatalf("re-register: %v", res)
	}
	soft := newPhone(t, r, "101", "Phone101pass")
	res = soft.register("Contact: <sip:101@10.0.0.7:5060>;+sip.instance=\"<urn:uuid:11111111-0000-1000-8000-00a0c91e6bf6>\";reg-id=1\r\nExpires: 300\r\n")
	if res.StatusCode != 200 || len(res.GetHeaders("Contact")) != 2 {
		t.Fatalf("second instance: %v", res)
	}
	b := r.Location().Lookup("101", time.Now())
	if len(b) != 2 {
		t.Fatalf("bindings %+v", b)
	}
	for _, x := range b {
		if x.Instance == inst && (x.Contact != "sip:101@10.0.0.6:5060" || x.RegID != 1) {
			t.Fatalf("desk binding not replaced: %+v", x)
		}
	}
}

func TestRegisterInstanceInputChecked(t *testing.T) {
	r := newTestRegistrar()
	p := newPhone(t, r, "101", "Phone101pass")
	// Not a URN: registered, but neither kept as an instance nor echoed.
	res := p.register("Contact: <sip:101@10.0.0.5>;+sip.instance=\"<evil\\\"x>\"\r\nExpires: 300\r\n")
	if res == nil || res.StatusCode != 200 {
		t.Fatalf("register: %v", res)
	}
	if v := res.GetHeader("Contact").Value(); strings.Contains(v, "instance") {
		t.Fatalf("a malformed instance was echoed: %s", v)
	}
	if b := r.Location().Lookup("101", time.Now()); len(b) != 1 || b[0].Instance != "" {
		t.Fatalf("bindings %+v", b)
	}
	res = p.register("Contact: <sip:101@10.0.0.5>;+sip.instance=\"<urn:uuid:1>\";reg-id=x\r\nExpires: 300\r\n")
	if res == nil || res.StatusCode != 400 || res.Reason != "Invalid reg-id" {
		t.Fatalf("bad reg-id: %v", res)
	}
}
