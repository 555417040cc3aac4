package e2e

import (
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/gateway/calls"
	"callgate/media/g711"
	"callgate/media/record"
	"callgate/media/rtptest"
	"callgate/sip/siptest"
)

// call waits for call id to end and returns its record.
func (o *office) call(id string) calls.Record {
	o.t.Helper()
	var rec calls.Record
	o.d.waitFor("call "+id+" ended", 10*time.Second, func() bool {
		res, err := o.d.get("/api/v1/calls/"+id, true)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		rec = calls.Record{}
		return res.StatusCode == 200 && json.NewDecoder(res.Body).Decode(&rec) == nil && !rec.Ended.IsZero()
	})
	return rec
}

// quietPhone fails if p rings within 300 ms.
func quietPhone(t *testing.T, p *siptest.Phone) {
	t.Helper()
	select {
	case c := <-p.Calls:
		t.Fatalf("phone %s rang: %s", p.User(), c.From())
	case <-time.After(300 * time.Millisecond):
	}
}

// Click-to-call: the API rings the employee's preferred line showing the
// client's number, plays ringback, dials the client through the employee's
// account once the employee answers, bridges audio both ways, records it,
// and the API hangs it up.
func TestClickToCallEndToEnd(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, employee := tonePeers(t)
	ctx := withTimeout(t, 30*time.Second)

	code, body := o.d.post(t, "/api/v1/calls", testToken, map[string]string{"employee": "ivanov", "number": "8 916 123-45-67"})
	id, _ := body["id"].(string)
	if code != 201 || id == "" {
		t.Fatalf("click-to-call: %d %v", code, body)
	}
	in := nextCall(t, o.phones["101"])
	if in.From() != "79161234567" || !strings.Contains(in.Request.From().DisplayName, "Исходящий") {
		t.Fatalf("phone shows %q <%s>", in.Request.From().DisplayName, in.From())
	}
	quietPhone(t, o.phones["102"]) // only the preferred line rings
	phoneSide, err := in.Answer(ctx, siptest.SDP(employee.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	toB, _ := siptest.MediaAddr(in.Request.Body())
	employee.SendTo(toB)

	var vc *siptest.IncomingCall
	select {
	case vc = <-o.vpbx.Calls:
	case <-ctx.Done():
		t.Fatal("the client was not dialled")
	}
	if vc.Request.Recipient.User != "79161234567" || vc.Request.From().Address.User != "sales1" {
		t.Fatalf("VPBX got %s from %s", vc.Request.Recipient.User, vc.Request.From().Address.User)
	}
	o.d.waitFor("ringback while the client rings", 5*time.Second, func() bool { return hears(employee, 425) })
	vpbxSide, err := vc.Answer(ctx, siptest.SDP(outside.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	toA, _ := siptest.MediaAddr(vc.Request.Body())
	outside.SendTo(toA)
	o.d.waitFor("tones both ways", 5*time.Second, func() bool { return hears(outside, 1000) && hears(employee, 440) })
	time.Sleep(600 * time.Millisecond)
	if hears(employee, 425) {
		t.Fatal("ringback goes on after the client answered")
	}
	time.Sleep(time.Second)

	req, _ := http.NewRequest("DELETE", o.d.url("/api/v1/calls/"+id), nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 204 {
		t.Fatalf("hangup: %v %v", res, err)
	}
	for _, c := range []*siptest.Call{phoneSide, vpbxSide} {
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatal("a side was not hung up")
		}
	}
	rec := o.call(id)
	if rec.Origin != "click-to-call" || rec.Direction != "outbound" || rec.Result != "answered" || rec.AnsweredBy != "ivanov" ||
		rec.Account != "sales1" || rec.Outside != "+79161234567" || rec.HangupBy != "api" || len(rec.Legs) != 1 || rec.Legs[0].Extension != "101" {
		t.Fatalf("record %+v", rec)
	}
	path := filepath.Join(o.recDir, rec.Legs[0].Recording)
	info, err := record.ReadInfo(path)
	if err != nil || math.Abs(float64(info.Frames)/8000-rec.Legs[0].TalkSeconds) > 0.15 {
		t.Fatalf("recording %v: %+v vs talk %.2fs", err, info, rec.Legs[0].TalkSeconds)
	}
	left, right, _ := record.Channels(path)
	mid := func(ch []float64) []float64 { return ch[len(ch)/4 : 3*len(ch)/4] }
	if !rtptest.Has(mid(left), 440) || !rtptest.Has(mid(right), 1000) {
		t.Fatal("recording: want the client (440 Hz) left and the employee (1000 Hz) right")
	}
	if res, _ := o.d.do(t, "DELETE", "/api/v1/calls/"+id, testToken); res.StatusCode != 404 {
		t.Fatalf("hanging up an ended call: %d", res.StatusCode)
	}
}

// from_number picks the trunk that owns the number.
func TestClickToCallFromStoreNumber(t *testing.T) {
	o := newOffice(t, officeOpts{Extra: secondTrunk})
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	ctx := withTimeout(t, 20*time.Second)
	code, body := o.d.post(t, "/api/v1/calls", testToken, map[string]string{"employee": "ivanov", "number": "+7 916 123 45 67", "from_number": "8 (495) 111-22-33"})
	if code != 201 {
		t.Fatalf("click-to-call: %d %v", code, body)
	}
	in := nextCall(t, o.phones["101"])
	if _, err := in.Answer(ctx, siptest.SDP("127.0.0.1:30950")); err != nil {
		t.Fatal(err)
	}
	select {
	case vc := <-o.vpbx.Calls:
		if vc.Request.From().Address.User != "support" {
			t.Fatalf("left through %s, want support", vc.Request.From().Address.User)
		}
		vc.Reject(486, "Busy Here")
	case <-ctx.Done():
		t.Fatal("the client was not dialled")
	}
	rec := o.call(body["id"].(string))
	if rec.Account != "support" || rec.TrunkNumber != "+74951112233" || rec.Result != "busy" {
		t.Fatalf("record %+v", rec)
	}
}

func TestClickToCallRefusals(t *testing.T) {
	o := newOffice(t, officeOpts{Extra: secondTrunk + employeeTokens})
	ctx := withTimeout(t, 30*time.Second)
	for _, tc := range []struct {
		token string
		body  map[string]string
		code  int
		want  string
	}{
		{testToken, map[string]string{"employee": "sidorov", "number": "+79161234567"}, 404, "unknown_employee"},
		{testToken, map[string]string{"employee": "ivanov", "number": "call me"}, 400, "invalid_number"},
		{testToken, map[string]string{"employee": "ivanov", "number": "+79161234567", "line": "103"}, 400, "bad_line"},
		{testToken, map[string]string{"employee": "ivanov"}, 400, "missing_field"},
		{testToken, map[string]string{"employee": "ivanov", "number": "+79161234567", "from_number": "+74950000000"}, 503, "upstream_not_registered"},
		{ivanovToken, map[string]string{"employee": "petrov", "number": "+79161234567"}, 403, "forbidden"},
	} {
		if code, body := o.d.post(t, "/api/v1/calls", tc.token, tc.body); code != tc.code || apiCode(body) != tc.want {
			t.Errorf("%v: %d %v, want %d %s", tc.body, code, body, tc.code, tc.want)
		}
	}
	if code, body := o.d.post(t, "/api/v1/calls", testToken, map[string]any{"employee": "ivanov", "number": 5}); code != 400 || apiCode(body) != "bad_json" {
		t.Errorf("bad JSON: %d %v", code, body)
	}

	// No registered phone: petrov's only line unregisters.
	if _, err := o.phones["103"].UnregisterAll(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := o.d.post(t, "/api/v1/calls", testToken, map[string]string{"employee": "petrov", "number": "+79161234567"}); code != 409 || apiCode(body) != "no_registered_phone" {
		t.Errorf("no phone: %d %v", code, body)
	}

	// Line 101 busy with an inbound call: asking for it is refused, and
	// without a line the free 102 rings instead.
	vpbxSide, _, _ := o.inbound(ctx, "127.0.0.1:30960", "127.0.0.1:30961")
	<-nextCall(t, o.phones["102"]).Gone() // the inbound call rang 102 too, then cancelled it
	o.d.waitMetric("callgate_calls_active", 1, 5*time.Second)
	if code, body := o.d.post(t, "/api/v1/calls", ivanovToken, map[string]string{"employee": "ivanov", "number": "+79161234567", "line": "101"}); code != 409 || apiCode(body) != "all_lines_busy" {
		t.Errorf("busy line: %d %v", code, body)
	}
	code, body := o.d.post(t, "/api/v1/calls", ivanovToken, map[string]string{"employee": "ivanov", "number": "+79161234567"})
	if code != 201 {
		t.Fatalf("second line: %d %v", code, body)
	}
	in := nextCall(t, o.phones["102"])
	// The employee hangs up before the client answers: the client's leg is
	// cancelled and the attempt says so.
	phoneSide, err := in.Answer(ctx, siptest.SDP("127.0.0.1:30962"))
	if err != nil {
		t.Fatal(err)
	}
	vc := <-o.vpbx.Calls
	vc.Ringing()
	if err := phoneSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-vc.Gone():
	case <-ctx.Done():
		t.Fatal("the client's leg was not cancelled")
	}
	if rec := o.call(body["id"].(string)); rec.Result != "abandoned" || rec.HangupBy != "employee" {
		t.Fatalf("abandoned attempt: %+v", rec)
	}
	_ = vpbxSide.Hangup(ctx)

	// The employee does not answer (ring_timeout 3s).
	code, body = o.d.post(t, "/api/v1/calls", testToken, map[string]string{"employee": "ivanov", "number": "+79161234567", "line": "102"})
	if code != 201 {
		t.Fatalf("click-to-call: %d %v", code, body)
	}
	nextCall(t, o.phones["102"]).Ringing()
	if rec := o.call(body["id"].(string)); rec.Result != "no-answer" || !strings.Contains(rec.Reason, "did not answer") {
		t.Fatalf("unanswered attempt: %+v", rec)
	}
	select {
	case <-o.vpbx.Calls:
		t.Fatal("the client was dialled although the employee never answered")
	default:
	}
}

// While the client's phone rings, the VPBX's early media (183 with SDP)
// replaces callgate's ringback.
func TestClickToCallPlaysUpstreamEarlyMedia(t *testing.T) {
	o := newOffice(t, officeOpts{})
	announcement, _ := rtptest.NewPeer(700, g711.PCMA)
	t.Cleanup(announcement.Close)
	_, employee := tonePeers(t)
	ctx := withTimeout(t, 20*time.Second)
	code, body := o.d.post(t, "/api/v1/calls", testToken, map[string]string{"employee": "ivanov", "number": "+79161234567", "line": "102"})
	if code != 201 {
		t.Fatalf("click-to-call: %d %v", code, body)
	}
	in := nextCall(t, o.phones["102"])
	if _, err := in.Answer(ctx, siptest.SDP(employee.Addr().String())); err != nil {
		t.Fatal(err)
	}
	toB, _ := siptest.MediaAddr(in.Request.Body())
	employee.SendTo(toB)
	vc := <-o.vpbx.Calls
	o.d.waitFor("ringback first", 5*time.Second, func() bool { return hears(employee, 425) })
	if err := vc.Progress(siptest.SDP(announcement.Addr().String())); err != nil {
		t.Fatal(err)
	}
	toA, _ := siptest.MediaAddr(vc.Request.Body())
	announcement.SendTo(toA)
	o.d.waitFor("the VPBX's early media", 5*time.Second, func() bool { return hears(employee, 700) && !hears(employee, 425) })
	vc.Reject(480, "Temporarily Unavailable")
	if rec := o.call(body["id"].(string)); rec.Result != "no-answer" || rec.HangupBy != "outside" {
		t.Fatalf("record %+v", rec)
	}
}

// RetailCRM's makeCallUrl: a wrong clientId is refused; the right one starts
// a click-to-call for the manager with that code, from the shop line given.
func TestRetailCRMMakeCallURL(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	o := retailOffice(t, st, secondTrunk, "")
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	var module struct {
		ClientID     string
		Logo         string
		AccountURL   string
		Integrations struct{ Telephony struct{ MakeCallURL string } }
	}
	o.d.waitFor("module registered", 10*time.Second, func() bool {
		m, _ := st.Module("callgate")
		return m != nil && json.Unmarshal(m, &module) == nil
	})
	makeCall := module.Integrations.Telephony.MakeCallURL
	// The module's logo and account page, as RetailCRM's marketplace shows
	// them, answer.
	for u, want := range map[string]string{module.Logo: "image/svg+xml", module.AccountURL: "text/html"} {
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), want) {
			t.Fatalf("%s: %d %s, want %s", u, res.StatusCode, res.Header.Get("Content-Type"), want)
		}
	}
	get := func(q url.Values) (int, map[string]any) {
		res, err := http.Get(makeCall + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, body
	}
	q := url.Values{"clientId": {"not-the-client-id"}, "code": {"101"}, "phone": {"89161234567"}, "userId": {"7"}, "externalPhone": {"+74951112233"}}
	if code, body := get(q); code != 403 || body["success"] != false {
		t.Fatalf("wrong clientId: %d %v", code, body)
	}
	select {
	case c := <-o.phones["101"].Calls:
		t.Fatalf("a refused makeCallUrl rang the phone: %s", c.From())
	case <-time.After(200 * time.Millisecond):
	}
	// A restart registers the module again, the same one: same code, same
	// clientId, so the CRM's settings keep working.
	o.d.stop()
	o.d = startDaemon(t, o.d.cfg)
	o.d.waitFor("module registered again", 10*time.Second, func() bool { _, edits := st.Module("callgate"); return edits == 2 })
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	for _, ext := range []string{"101", "102", "103"} {
		mustRegister(t, o.phones[ext])
	}
	first := module.ClientID
	if m, _ := st.Module("callgate"); json.Unmarshal(m, &module) != nil || module.ClientID != first {
		t.Fatalf("clientId changed across a restart: %q → %q", first, module.ClientID)
	}
	q.Set("clientId", module.ClientID)
	if code, body := get(q); code != 200 || body["callId"] == "" {
		t.Fatalf("makeCallUrl: %d %v", code, body)
	}
	ctx := withTimeout(t, 20*time.Second)
	in := nextCall(t, o.phones["101"])
	if in.From() != "79161234567" {
		t.Fatalf("phone shows %q", in.From())
	}
	if _, err := in.Answer(ctx, siptest.SDP("127.0.0.1:30986")); err != nil {
		t.Fatal(err)
	}
	select {
	case vc := <-o.vpbx.Calls:
		if vc.Request.From().Address.User != "support" || vc.Request.Recipient.User != "79161234567" {
			t.Fatalf("VPBX got %s from %s", vc.Request.Recipient.User, vc.Request.From().Address.User)
		}
		vc.Reject(486, "Busy Here")
	case <-ctx.Done():
		t.Fatal("the client was not dialled")
	}
}
