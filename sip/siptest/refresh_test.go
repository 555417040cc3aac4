package siptest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// A phone kept registered sends REGISTER again at half of what the
// registrar granted, goes on after a refusal once the registrar accepts
// again, and stops when its context ends.
func TestKeepRegisteredRefreshesBeforeExpiry(t *testing.T) {
	v, err := NewVPBX(VPBXConfig{Domain: "vpbx1.mangosip.ru", Accounts: map[string]string{"sales1": "Secret123"}, Grant: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	p, err := NewPhone(PhoneConfig{User: "sales1", Password: "Secret123", Server: v.Addr(), Domain: "vpbx1.mangosip.ru"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	refreshes := make(chan Refresh, 64)
	first := p.KeepRegistered(ctx, 120, func(r Refresh) { refreshes <- r })
	if !first.OK() || first.Granted != 2*time.Second {
		t.Fatalf("first registration: %v", first)
	}

	// Granted 2 s: a refresh about every second, each before the binding runs out.
	last := time.Now()
	for i := 0; i < 3; i++ {
		select {
		case r := <-refreshes:
			if !r.OK() || r.Granted != 2*time.Second {
				t.Fatalf("refresh %d: %v", i, r)
			}
			if gap := time.Since(last); gap > 2*time.Second {
				t.Fatalf("refresh %d came %s after the previous registration (granted 2s)", i, gap)
			}
			last = time.Now()
		case <-time.After(3 * time.Second):
			t.Fatalf("refresh %d did not come", i)
		}
	}

	// Refused: reported, then retried until accepted again.
	v.SetMode(VPBXForbidden)
	select {
	case r := <-refreshes:
		if r.OK() || r.Response == nil || r.Response.StatusCode != 403 {
			t.Fatalf("refresh while forbidden: %v", r)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no refresh while forbidden")
	}
	v.SetMode(VPBXAccept)
	deadline := time.After(8 * time.Second)
	for ok := false; !ok; {
		select {
		case r := <-refreshes:
			ok = r.OK()
		case <-deadline:
			t.Fatal("not registered again after the registrar accepted again")
		}
	}

	// Stopped: no more REGISTERs reach the registrar.
	cancel()
	time.Sleep(200 * time.Millisecond) // an attempt in flight ends
	for drained := false; !drained; {
		select {
		case <-v.Registrations:
		default:
			drained = true
		}
	}
	select {
	case r := <-v.Registrations:
		t.Fatalf("REGISTER after the context ended: %+v", r)
	case <-time.After(2500 * time.Millisecond):
	}
}

// The interval granted is read from the phone's own Contact among the
// AOR's bindings, else from Expires, else it is what was asked.
func TestRefreshGranted(t *testing.T) {
	p, err := NewPhone(PhoneConfig{User: "101", Server: "127.0.0.1:9"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ours := "<" + p.contact.Address.String() + ">"
	other := "<sip:101@127.0.0.2:5060>"
	for _, tc := range []struct {
		name    string
		headers []string
		want    time.Duration
	}{
		{"own contact", []string{"Contact: " + ours + ";expires=90"}, 90 * time.Second},
		{"own among others", []string{"Contact: " + other + ";expires=3600", "Contact: " + ours + ";expires=45"}, 45 * time.Second},
		{"others only, Expires header", []string{"Contact: " + other + ";expires=3600", "Expires: 30"}, 30 * time.Second},
		{"nothing", nil, 120 * time.Second},
		{"zero is not a grant", []string{"Contact: " + ours + ";expires=0"}, 120 * time.Second},
		{"garbage", []string{"Contact: " + ours + ";expires=soon", "Expires: -5"}, 120 * time.Second},
	} {
		raw := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nCall-ID: a\r\nCSeq: 1 REGISTER\r\n" +
			"From: <sip:101@x>;tag=1\r\nTo: <sip:101@x>;tag=2\r\n"
		for _, h := range tc.headers {
			raw += h + "\r\n"
		}
		raw += "Content-Length: 0\r\n\r\n"
		msg, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := p.granted(msg.(*sip.Response), 120*time.Second); got != tc.want {
			t.Errorf("%s: granted %s, want %s", tc.name, got, tc.want)
		}
	}
}

// FuzzRefreshGranted feeds arbitrary responses to the reading of the
// granted interval: it never panics and never grants nothing.
func FuzzRefreshGranted(f *testing.F) {
	p, err := NewPhone(PhoneConfig{User: "101", Server: "127.0.0.1:9"})
	if err != nil {
		f.Fatal(err)
	}
	defer p.Close()
	head := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nCall-ID: a\r\nCSeq: 1 REGISTER\r\n"
	f.Add(head + "Contact: <" + p.contact.Address.String() + ">;expires=60\r\nContent-Length: 0\r\n\r\n")
	f.Add(head + "Contact: <sip:101@127.0.0.2>;expires=60, <sip:x@y>\r\nExpires: 10\r\nContent-Length: 0\r\n\r\n")
	f.Add(head + "Contact: *\r\nExpires: 99999999999999999999\r\nContent-Length: 0\r\n\r\n")
	f.Fuzz(func(t *testing.T, raw string) {
		msg, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			return
		}
		res, ok := msg.(*sip.Response)
		if !ok {
			return
		}
		if got := p.granted(res, time.Minute); got <= 0 {
			t.Fatalf("granted %s for %q", got, strings.ReplaceAll(raw, "\r\n", " | "))
		}
	})
}
