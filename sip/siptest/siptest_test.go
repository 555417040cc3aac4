package siptest

import (
	"context"
	"testing"
	"time"
)

// The harness is tested against itself: a phone registers with the VPBX
// stand-in, which then calls it; the phone calls out through the stand-in.
func TestPhoneAndVPBX(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := NewVPBX(VPBXConfig{Domain: "vpbx1.mangosip.ru", Accounts: map[string]string{"sales1": "Secret123"}, Grant: 60})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	p, err := NewPhone(PhoneConfig{User: "sales1", Password: "Secret123", Server: v.Addr(), Domain: "vpbx1.mangosip.ru"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	res, err := p.Register(ctx, 120)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("register: %v %v", res, err)
	}
	reg, ok := v.Binding("sales1")
	if !ok || reg.Source != p.Addr() || reg.Expires != 120 {
		t.Fatalf("binding %+v", reg)
	}
	if bad, _ := p.RegisterWithPassword(ctx, "nope"); bad == nil || bad.StatusCode != 403 {
		t.Fatalf("wrong password: %v", bad)
	}

	// Inbound: the VPBX calls the phone.
	callRes := make(chan error, 1)
	var inbound *Call
	go func() {
		var err error
		inbound, err = v.Invite(ctx, "sales1", "79161234567", SDP("127.0.0.1:30000"))
		callRes <- err
	}()
	var in *IncomingCall
	select {
	case in = <-p.Calls:
	case <-ctx.Done():
		t.Fatal("no INVITE at the phone")
	}
	if in.From() != "79161234567" {
		t.Fatalf("caller %q", in.From())
	}
	in.Ringing()
	answered, err := in.Answer(ctx, SDP("127.0.0.1:30002"))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-callRes; err != nil {
		t.Fatal(err)
	}
	if err := inbound.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-answered.Done():
	case <-ctx.Done():
		t.Fatal("BYE did not end the phone's dialog")
	}

	// Outbound: the phone calls an outside number; the VPBX is busy, then answers.
	go func() {
		c := <-v.Calls
		c.Reject(486, "Busy Here")
		c = <-v.Calls
		c.Answer(ctx, SDP("127.0.0.1:30004"))
	}()
	if _, err := p.Dial(ctx, "79161234567", SDP("127.0.0.1:30006")); err == nil {
		t.Fatal("busy callee answered")
	}
	out, err := p.Dial(ctx, "79161234567", SDP("127.0.0.1:30006"))
	if err != nil {
		t.Fatal(err)
	}
	if code, err := out.Refer(ctx, "sip:79169999999@vpbx1.mangosip.ru", ""); err != nil || code != 202 {
		t.Fatalf("refer: %d %v", code, err)
	}
	select {
	case r := <-v.Requests:
		if r.Method != "REFER" || r.GetHeader("Refer-To") == nil {
			t.Fatalf("VPBX got %v", r.Method)
		}
	case <-ctx.Done():
		t.Fatal("REFER not seen")
	}
	if err := out.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
}
