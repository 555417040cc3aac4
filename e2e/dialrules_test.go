package e2e

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/sip/siptest"

	"github.com/emiago/sipgo"
)

// noInviteAtVPBX fails if the VPBX stand-in got an INVITE within wait.
func (o *office) noInviteAtVPBX(what string, wait time.Duration) {
	o.t.Helper()
	select {
	case c := <-o.vpbx.Calls:
		o.t.Fatalf("%s reached the VPBX as %q", what, c.Request.Recipient.User)
	case <-time.After(wait):
	}
}

// With no dial rules configured, a phone may call the region's mobile,
// fixed and toll-free numbers, and is refused premium-rate and international
// ones with 403 before anything goes upstream; an employee's own allow list
// widens that for them alone.
func TestDialRulesDefaultsRefuseTollFraud(t *testing.T) {
	o := newOffice(t, officeOpts{IvanovExtra: "[employee.dial]\nallow = [\"GB\"]\n"})
	petrov := o.phones["103"]
	refused := []struct{ dialled, rule string }{
		{"810442079460000", "international"}, // 810 44 20 7946 0000: London
		{"+8821312345678", "international"},  // international networks
		{"+881612345678", "international"},   // satellite
		{"88095050505", "premium-rate"},      // 8 809: Russian premium rate
		{"87011234567", "international"},     // +7 701: Kazakhstan, not Russia
	}
	for _, c := range refused {
		ctx := withTimeout(t, 10*time.Second)
		_, err := petrov.Dial(ctx, c.dialled, siptest.SDP("127.0.0.1:31100"))
		var de *sipgo.ErrDialogResponse
		if !errors.As(err, &de) || de.Res.StatusCode != 403 || de.Res.Reason != "Dial Rule: "+c.rule {
			t.Fatalf("dial %s: %v, want 403 Dial Rule: %s", c.dialled, err, c.rule)
		}
	}
	o.noInviteAtVPBX("a refused number", 300*time.Millisecond)
	o.d.waitMetric(`callgate_dial_refused_total{rule="international"}`, 4, 5*time.Second)
	o.d.waitMetric(`callgate_dial_refused_total{rule="premium-rate"}`, 1, 5*time.Second)
	if log := o.d.log.String(); !strings.Contains(log, `msg="dial rule refused a call"`) ||
		!strings.Contains(log, "employee=petrov number=+78095050505 rule=premium-rate") {
		t.Fatalf("refusals not logged with employee, number and rule")
	}

	allowed := []struct {
		phone, dialled, vpbx string
	}{
		{"103", "89161234567", "79161234567"}, // mobile
		{"103", "88001000000", "78001000000"}, // toll-free
		{"103", "112", "112"},                 // emergency
		{"101", "810442079460000", "442079460000"},
	}
	for _, c := range allowed {
		ctx := withTimeout(t, 10*time.Second)
		got := make(chan string, 1)
		go func() {
			select {
			case in := <-o.vpbx.Calls:
				got <- in.Request.Recipient.User
				in.Reject(486, "Busy Here")
			case <-ctx.Done():
			}
		}()
		_, err := o.phones[c.phone].Dial(ctx, c.dialled, siptest.SDP("127.0.0.1:31102"))
		var de *sipgo.ErrDialogResponse
		if !errors.As(err, &de) || de.Res.StatusCode != 486 {
			t.Fatalf("%s dials %s: %v, want the VPBX's 486", c.phone, c.dialled, err)
		}
		if n := <-got; n != c.vpbx {
			t.Fatalf("%s reached the VPBX as %q, want %q", c.dialled, n, c.vpbx)
		}
	}
}

// petrov has one extension: two outbound calls at once, not a third; when
// one ends he may call again.
func TestDialRulesConcurrentCap(t *testing.T) {
	o := newOffice(t, officeOpts{})
	ctx := withTimeout(t, 30*time.Second)
	go func() {
		for {
			select {
			case in := <-o.vpbx.Calls:
				go in.Answer(ctx, siptest.SDP("127.0.0.1:31110"))
			case <-ctx.Done():
				return
			}
		}
	}()
	petrov := o.phones["103"]
	var up []*siptest.Call
	for i := 0; i < 2; i++ {
		c, err := petrov.Dial(ctx, "89161234567", siptest.SDP("127.0.0.1:31112"))
		if err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
		up = append(up, c)
	}
	_, err := petrov.Dial(ctx, "89161234568", siptest.SDP("127.0.0.1:31114"))
	var de *sipgo.ErrDialogResponse
	if !errors.As(err, &de) || de.Res.StatusCode != 403 || de.Res.Reason != "Dial Rule: concurrent-calls" {
		t.Fatalf("third call: %v, want 403 Dial Rule: concurrent-calls", err)
	}
	o.d.waitMetric(`callgate_dial_refused_total{rule="concurrent-calls"}`, 1, 5*time.Second)
	// ivanov's calls are his own: petrov's cap does not hold them.
	iv, err := o.phones["101"].Dial(ctx, "89161234569", siptest.SDP("127.0.0.1:31116"))
	if err != nil {
		t.Fatalf("ivanov's call while petrov is at his cap: %v", err)
	}
	if err := up[0].Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	o.d.waitMetric("callgate_calls_active", 2, 5*time.Second)
	again, err := petrov.Dial(ctx, "89161234567", siptest.SDP("127.0.0.1:31118"))
	if err != nil {
		t.Fatalf("a call after one ended: %v", err)
	}
	for _, c := range []*siptest.Call{up[1], iv, again} {
		c.Hangup(ctx)
	}
	o.d.waitMetric("callgate_calls_active", 0, 5*time.Second)
}

// Transfers (REFER from the phone, the API's blind and attended transfer)
// and click-to-call use the same rules: the transferor's.
func TestDialRulesHoldForTransfersAndClickToCall(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, employee := tonePeers(t)
	ctx := withTimeout(t, 30*time.Second)
	vpbxSide, ivanovSide, in := o.inbound(ctx, outside.Addr().String(), employee.Addr().String())
	outside.SendTo(mustMediaAddr(t, vpbxSide.Remote))
	employee.SendTo(mustMediaAddr(t, in.Request.Body()))

	if code, err := ivanovSide.Refer(ctx, "sip:+8821312345678@vpbx.test", ""); err != nil || code != 403 {
		t.Fatalf("REFER to +882: %d %v, want 403", code, err)
	}
	id := o.activeCallID()
	for _, mode := range []string{"blind", "attended"} {
		code, body := o.d.post(t, "/api/v1/calls/"+id+"/transfer", testToken, map[string]string{"to": "8 809 505 05 05", "mode": mode})
		e, _ := body["error"].(map[string]any)
		if code != 403 || apiCode(body) != "dial_rule" || e["rule"] != "premium-rate" {
			t.Fatalf("%s API transfer to 8 809: %d %v", mode, code, body)
		}
	}
	code, body := o.d.post(t, "/api/v1/calls", testToken, map[string]string{"employee": "petrov", "number": "810 44 20 7946 0000"})
	if e, _ := body["error"].(map[string]any); code != 403 || apiCode(body) != "dial_rule" || e["rule"] != "international" {
		t.Fatalf("click-to-call to London: %d %v", code, body)
	}
	o.noInviteAtVPBX("a refused transfer or click-to-call", 300*time.Millisecond)
	select {
	case <-o.phones["103"].Calls:
		t.Fatal("a refused click-to-call rang the employee's phone")
	default:
	}
	// The call goes on, both ways.
	o.d.waitFor("each side still hears the other", 5*time.Second, func() bool { return hears(outside, 1000) && hears(employee, 440) })
	o.d.waitMetric(`callgate_dial_refused_total{rule="international"}`, 2, 5*time.Second)
	o.d.waitMetric(`callgate_dial_refused_total{rule="premium-rate"}`, 2, 5*time.Second)
	if log := o.d.log.String(); !strings.Contains(log, "employee=ivanov number=+8821312345678 rule=international detail=001 via=transfer") ||
		!strings.Contains(log, "employee=petrov number=+442079460000 rule=international detail=GB via=click-to-call") {
		t.Fatal("transfer and click-to-call refusals not logged")
	}
	vpbxSide.Hangup(ctx)
}

// A call RetailCRM starts (makeCallUrl) passes the same rules: a refused
// number rings nobody and RetailCRM hears 403 dial_rule.
func TestDialRulesHoldForCRMCalls(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	o := retailOffice(t, st, "", "")
	var module struct {
		ClientID     string
		Integrations struct{ Telephony struct{ MakeCallURL string } }
	}
	o.d.waitFor("module registered", 10*time.Second, func() bool {
		m, _ := st.Module("callgate")
		return m != nil && json.Unmarshal(m, &module) == nil
	})
	q := url.Values{"clientId": {module.ClientID}, "code": {"101"}, "phone": {"8 809 505 05 05"}, "userId": {"7"}}
	res, err := http.Get(module.Integrations.Telephony.MakeCallURL + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(res.Body).Decode(&body)
	if res.StatusCode != 403 || body["code"] != "dial_rule" {
		t.Fatalf("makeCallUrl to 8 809: %d %v", res.StatusCode, body)
	}
	select {
	case c := <-o.phones["101"].Calls:
		t.Fatalf("a refused CRM call rang the phone: %s", c.From())
	case <-time.After(200 * time.Millisecond):
	}
	o.noInviteAtVPBX("a refused CRM call", 100*time.Millisecond)
	o.d.waitMetric(`callgate_dial_refused_total{rule="premium-rate"}`, 1, 5*time.Second)
}

func mustMediaAddr(t *testing.T, sdp []byte) netip.AddrPort {
	t.Helper()
	a, err := siptest.MediaAddr(sdp)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
