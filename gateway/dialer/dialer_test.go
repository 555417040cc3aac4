package dialer

import (
	"errors"
	"net/http"
	"slices"
	"testing"

	"callgate/gateway/api"
	"callgate/gateway/directory"
	"callgate/sip/b2bua"
)

type fakeDir map[string]*directory.Employee

func (d fakeDir) Employee(id string) (*directory.Employee, bool) { e, ok := d[id]; return e, ok }

// fakeRouter routes every number through sales1, but numbers the dial
// rules refuse and text that is not a number.
type fakeRouter struct{ lease *lease }

func (r fakeRouter) ClickToCall(employee, number, fromNumber string) (b2bua.OutboundRoute, string, error) {
	switch number {
	case "88001234567-premium":
		return b2bua.OutboundRoute{}, "", &b2bua.Refusal{Status: 403, Reason: "Forbidden", Rule: "premium"}
	case "not a number":
		return b2bua.OutboundRoute{}, "", errors.New("not a number")
	}
	return b2bua.OutboundRoute{Account: b2bua.Account{User: "sales1"}, Number: "79161234567", Lease: r.lease}, "+79161234567", nil
}

type lease struct{ ended bool }

func (l *lease) Answered() {}
func (l *lease) End()      { l.ended = true }

// fakeCalls has busy lines and places every click-to-call it is asked to.
type fakeCalls struct {
	busy   []string
	err    error
	placed []b2bua.ClickToCall
}

func (c *fakeCalls) Busy(ext string) bool { return slices.Contains(c.busy, ext) }
func (c *fakeCalls) ClickToCall(r b2bua.ClickToCall) (string, error) {
	if c.err != nil {
		return "", c.err
	}
	c.placed = append(c.placed, r)
	return "call-1", nil
}
func (c *fakeCalls) HangupByAPI(id string) bool { return id == "call-1" }
func (c *fakeCalls) Transfer(id, target, mode string) (int, string, error) {
	return transferAnswer(id, target)
}
func (c *fakeCalls) ConsultTransfer(id, target string) (int, string, error) {
	return transferAnswer(id, target)
}
func (c *fakeCalls) FinishConsultation(id, how string) error {
	if id != "call-1" {
		return b2bua.ErrNoCall
	}
	if how != "complete" {
		return b2bua.ErrNoConsultation
	}
	return nil
}

func transferAnswer(id, target string) (int, string, error) {
	switch {
	case id != "call-1":
		return 0, "", b2bua.ErrNoCall
	case target == "ringing":
		return 0, "", b2bua.ErrTransferState
	case target == "premium":
		return 0, "", &b2bua.Refusal{Rule: "premium"}
	case target == "busy":
		return 486, "Busy Here", nil
	}
	return http.StatusOK, "OK", nil
}

// code is the API's error code of err ("" for none).
func code(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var de *api.DialError
	if !errors.As(err, &de) {
		t.Fatalf("not an API error: %v", err)
	}
	return de.Code
}

// A click-to-call rings the employee's first line that is registered and
// free (or the line asked for), and refuses in the API's terms otherwise;
// a refused call ends the router's lease.
func TestClickToCallLineChoiceAndRefusals(t *testing.T) {
	dir := fakeDir{"ivanov": {ID: "ivanov", Extensions: []string{"101", "102"}}}
	for _, tc := range []struct {
		name       string
		req        api.ClickToCallRequest
		registered []string
		busy       []string
		upstream   bool
		callErr    error
		line       string // the line rung; "" when refused
		code       string
	}{
		{name: "first line", req: api.ClickToCallRequest{Employee: "ivanov", Number: "89161234567"}, registered: []string{"101", "102"}, upstream: true, line: "101"},
		{name: "first line busy", req: api.ClickToCallRequest{Employee: "ivanov", Number: "89161234567"}, registered: []string{"101", "102"}, busy: []string{"101"}, upstream: true, line: "102"},
		{name: "first line not registered", req: api.ClickToCallRequest{Employee: "ivanov", Number: "89161234567"}, registered: []string{"102"}, upstream: true, line: "102"},
		{name: "the line asked for", req: api.ClickToCallRequest{Employee: "ivanov", Number: "89161234567", Line: "102"}, registered: []string{"101", "102"}, upstream: true, line: "102"},
		{name: "the line asked for is busy", req: api.ClickToCallRequest{Employee: "ivanov", Number: "89161234567", Line: "102"}, registered: []string{"101", "102"}, busy: []string{"102"}, upstream: true, code: "all_lines_busy"},
		{name: "not the employee's line", req: api.ClickToCallRequest{Employee: "ivanov", Number: "89161234567", Line: "103"}, registered: []string{"101"}, upstream: true, code: "bad_line"},
		{name: "all lines busy", req: api.ClickToCallRequest{Employee: "ivanov", Number: "89161234567"}, registered: []string{"101", "102"}, busy: []string{"101", "102"}, upstream: true, code: "all_lines_busy"},
		{name: "no phone registered", req: api.ClickToCallRequest{Employee: "ivanov", Number: "89161234567"}, upstream: true, code: "no_registered_phone"},
		{name: "upstream not registered", req: api.ClickToCallRequest{Employee: "ivanov", Number: "89161234567"}, registered: []string{"101"}, code: "upstream_not_registered"},
		{name: "unknown employee", req: api.ClickToCallRequest{Employee: "sidorov", Number: "89161234567"}, registered: []string{"101"}, upstream: true, code: "unknown_employee"},
		{name: "dial rules", req: api.ClickToCallRequest{Employee: "ivanov", Number: "88001234567-premium"}, registered: []string{"101"}, upstream: true, code: "dial_rule"},
		{name: "not a number", req: api.ClickToCallRequest{Employee: "ivanov", Number: "not a number"}, registered: []string{"101"}, upstream: true, code: "invalid_number"},
		{name: "phone gone meanwhile", req: api.ClickToCallRequest{Employee: "ivanov", Number: "89161234567"}, registered: []string{"101"}, upstream: true, callErr: b2bua.ErrNotRegistered, code: "no_registered_phone"},
		{name: "shutting down", req: api.ClickToCallRequest{Employee: "ivanov", Number: "89161234567"}, registered: []string{"101"}, upstream: true, callErr: b2bua.ErrShuttingDown, code: "shutting_down"},
		{name: "no media", req: api.ClickToCallRequest{Employee: "ivanov", Number: "89161234567"}, registered: []string{"101"}, upstream: true, callErr: errors.New("no free RTP ports"), code: "media_unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, l := &fakeCalls{busy: tc.busy, err: tc.callErr}, &lease{}
			d := &Dialer{Calls: calls, Router: fakeRouter{l}, Directory: dir,
				Registered:         func(ext string) bool { return slices.Contains(tc.registered, ext) },
				UpstreamRegistered: func(account string) bool { return tc.upstream && account == "sales1" }}
			id, err := d.ClickToCall(tc.req)
			if got := code(t, err); got != tc.code {
				t.Fatalf("code %q (%v), want %q", got, err, tc.code)
			}
			if tc.line == "" {
				if id != "" || len(calls.placed) != 0 {
					t.Fatalf("placed %+v", calls.placed)
				}
				if tc.code != "unknown_employee" && tc.code != "dial_rule" && tc.code != "invalid_number" && !l.ended {
					t.Fatal("a refused call kept its lease")
				}
				return
			}
			if id != "call-1" || len(calls.placed) != 1 || l.ended {
				t.Fatalf("id %q, placed %+v, lease ended %v", id, calls.placed, l.ended)
			}
			p := calls.placed[0]
			if p.Line != (b2bua.Target{Extension: tc.line, Employee: "ivanov"}) || p.Outside != "+79161234567" || p.Route.Account.User != "sales1" || p.Display == "" {
				t.Fatalf("placed %+v", p)
			}
		})
	}
}

// Transfers and their ends answer in the API's terms.
func TestTransferAnswers(t *testing.T) {
	d := &Dialer{Calls: &fakeCalls{}}
	for _, tc := range []struct {
		id, to, mode string
		state, code  string
	}{
		{"call-1", "petrov", "blind", "transferred", ""},
		{"call-1", "petrov", "attended", "consulting", ""},
		{"call-2", "petrov", "blind", "", "call_not_found"},
		{"call-1", "ringing", "blind", "", "not_transferable"},
		{"call-1", "premium", "attended", "", "dial_rule"},
		{"call-1", "busy", "blind", "", "transfer_failed"},
	} {
		state, err := d.Transfer(tc.id, tc.to, tc.mode)
		if state != tc.state || code(t, err) != tc.code {
			t.Fatalf("%+v: %q %v", tc, state, err)
		}
	}
	if code(t, d.FinishTransfer("call-2", "complete")) != "call_not_found" || code(t, d.FinishTransfer("call-1", "cancel")) != "no_consultation" ||
		d.FinishTransfer("call-1", "complete") != nil {
		t.Fatal("finishing a transfer")
	}
	if !d.Hangup("call-1") || d.Hangup("call-2") {
		t.Fatal("hangup")
	}
}
