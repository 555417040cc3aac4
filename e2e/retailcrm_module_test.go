package e2e

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/sip/siptest"

	"github.com/chromedp/chromedp"
	"github.com/emiago/sipgo"
)

// RetailCRM's changeUserStatusUrl: a manager gone to dinner is not rung by
// inbound calls (sales1 rings only ivanov, so the VPBX is refused), back
// to "free" they are rung again; a wrong clientId or an unknown status
// changes nothing.
func TestRetailCRMUserStatusKeepsCallsAway(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	o := retailOffice(t, st, "", "")
	var module struct {
		ClientID     string
		Integrations struct {
			Telephony struct{ ChangeUserStatusURL string }
		}
	}
	o.d.waitFor("module registered", 10*time.Second, func() bool {
		m, _ := st.Module("callgate")
		return m != nil && json.Unmarshal(m, &module) == nil
	})
	set := func(clientID, status string) (int, map[string]any) {
		t.Helper()
		res, err := http.PostForm(module.Integrations.Telephony.ChangeUserStatusURL,
			url.Values{"clientId": {clientID}, "userId": {"7"}, "code": {"101"}, "status": {status}})
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, body
	}
	if code, body := set("not-the-client-id", "dinner"); code != 403 || body["success"] != false {
		t.Fatalf("wrong clientId: %d %v", code, body)
	}
	if code, body := set(module.ClientID, "vacation"); code != 400 || body["success"] != false {
		t.Fatalf("unknown status: %d %v", code, body)
	}
	ctx := withTimeout(t, 30*time.Second)
	vpbxSide, _, _ := o.inbound(ctx, "127.0.0.1:30930", "127.0.0.1:30931") // the refusals changed nothing
	<-nextCall(t, o.phones["102"]).Gone()                                  // ivanov's other line, cancelled
	vpbxSide.Hangup(ctx)

	if code, body := set(module.ClientID, "dinner"); code != 200 || body["success"] != true {
		t.Fatalf("dinner: %d %v", code, body)
	}
	var refused *sipgo.ErrDialogResponse
	if _, err := o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP("127.0.0.1:30932")); !errors.As(err, &refused) {
		t.Fatalf("a call to ivanov at dinner: %v, want a refusal", err)
	}
	for _, ext := range []string{"101", "102"} {
		select {
		case c := <-o.phones[ext].Calls:
			t.Fatalf("phone %s rang while ivanov is at dinner: %s", ext, c.From())
		case <-time.After(300 * time.Millisecond):
		}
	}
	if code, _ := set(module.ClientID, "free"); code != 200 {
		t.Fatalf("free: %d", code)
	}
	vpbxSide, _, _ = o.inbound(ctx, "127.0.0.1:30933", "127.0.0.1:30934")
	<-nextCall(t, o.phones["102"]).Gone()
	vpbxSide.Hangup(ctx)
}

// The console's status: ivanov picks "Обед" in the header; RetailCRM is
// told (users/7/status), inbound calls pass him by, the console shows the
// status again after a reload; "Свободен" brings the calls back.
func TestConsoleStatusReachesRetailCRMAndRouting(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	o := consoleOffice(t, st, officeOpts{})
	b := browser(t)
	login(t, b, o.d.url(""), "ivanov")
	pick := func(status string) {
		t.Helper()
		browse(t, b, "pick "+status, chromedp.Evaluate[chromedp.Void](`(s => { s.value = '`+status+`'; s.dispatchEvent(new Event('change')) })(document.getElementById('presence'))`))
		o.d.waitFor("RetailCRM told "+status, 10*time.Second, func() bool { return st.UserStatuses()[7] == status })
	}
	label := value(t, b, "the status picker", chromedp.Evaluate[string](`document.querySelector('#presence option[value="dinner"]').textContent`))
	if label != "Обед" {
		t.Fatalf("the dinner status reads %q", label)
	}
	pick("dinner")
	ctx := withTimeout(t, 30*time.Second)
	var refused *sipgo.ErrDialogResponse
	if _, err := o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP("127.0.0.1:30935")); !errors.As(err, &refused) {
		t.Fatalf("a call to ivanov at dinner: %v, want a refusal", err)
	}
	browse(t, b, "reload the console", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("calls")))
	if v := value(t, b, "the status after a reload", chromedp.Poll[string](`(v => v === 'dinner' && v)(document.getElementById('presence').value)`,
		chromedp.WithPollingTimeout(5*time.Second))); v != "dinner" {
		t.Fatalf("status after a reload %q", v)
	}
	screenshot(t, b, "status-dinner")
	pick("free")
	// The caller is a customer RetailCRM knows only by this number: the
	// card says «Неизвестный клиент», not the number twice.
	st.AddCustomer("+79161234567", "", "79161234567")
	vpbxSide, _, _ := o.inbound(ctx, "127.0.0.1:30936", "127.0.0.1:30937")
	<-nextCall(t, o.phones["102"]).Gone()
	time.Sleep(time.Second) // the card's client lookup has answered
	if name := value(t, b, "the card's name", chromedp.Evaluate[string](`(document.querySelector('.popup .name')||{}).textContent||''`)); name != "Неизвестный клиент" {
		t.Fatalf("the card of a client known only by number reads %q", name)
	}
	vpbxSide.Hangup(ctx)
}
