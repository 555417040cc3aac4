package crmlink

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"callgate/gateway/api"
	"callgate/gateway/store"
)

// RetailCRM's makeCallUrl: only with the clientId callgate registered, for
// the employee named by code (their line) or userId, placing the call
// through the dialer and answering in RetailCRM's shape.
func TestRetailMakeCall(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Once(retailClientID, []byte("client-secret")); err != nil {
		t.Fatal(err)
	}
	var asked *api.ClickToCallRequest
	dialErr := error(nil)
	l := &Link{deps: Deps{Store: db, Directory: office}, log: testLog(t), retailUsers: map[int]string{7: "ivanov", 9: "petrov"}}
	h := l.Routes(func(req api.ClickToCallRequest) (string, error) {
		asked = &req
		if dialErr != nil {
			return "", dialErr
		}
		return "call-1", nil
	})["POST /api/v1/retailcrm/make-call"]
	for _, tc := range []struct {
		name   string
		form   url.Values
		err    error
		status int
		want   *api.ClickToCallRequest
		answer string // errorMsg, or callId when it succeeds
	}{
		{name: "by code, from that line", form: url.Values{"clientId": {"client-secret"}, "code": {"102"}, "phone": {"89161234567"}, "externalPhone": {"74951234567"}},
			status: 200, want: &api.ClickToCallRequest{Employee: "ivanov", Number: "89161234567", Line: "102", FromNumber: "74951234567"}, answer: "call-1"},
		{name: "by userId, any line", form: url.Values{"clientId": {"client-secret"}, "userId": {"9"}, "phone": {"89161234567"}},
			status: 200, want: &api.ClickToCallRequest{Employee: "petrov", Number: "89161234567"}, answer: "call-1"},
		{name: "an unknown code falls back to userId", form: url.Values{"clientId": {"client-secret"}, "code": {"555"}, "userId": {"7"}, "phone": {"1"}},
			status: 200, want: &api.ClickToCallRequest{Employee: "ivanov", Number: "1"}, answer: "call-1"},
		{name: "wrong clientId", form: url.Values{"clientId": {"guess"}, "code": {"101"}, "phone": {"1"}}, status: 403, answer: "wrong clientId"},
		{name: "nobody with this code or user", form: url.Values{"clientId": {"client-secret"}, "code": {"555"}, "userId": {"8"}, "phone": {"1"}},
			status: 404, answer: "no employee with this code or userId"},
		{name: "the dialer refuses", form: url.Values{"clientId": {"client-secret"}, "code": {"103"}, "phone": {"1"}},
			err:    &api.DialError{Status: http.StatusConflict, Code: "all_lines_busy", Message: "every line of the employee is in a call"},
			status: 409, want: &api.ClickToCallRequest{Employee: "petrov", Number: "1", Line: "103"}, answer: "every line of the employee is in a call"},
		{name: "the call fails", form: url.Values{"clientId": {"client-secret"}, "code": {"103"}, "phone": {"1"}}, err: errors.New("boom"),
			status: 500, want: &api.ClickToCallRequest{Employee: "petrov", Number: "1", Line: "103"}, answer: "the call could not be placed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked, dialErr = nil, tc.err
			req := httptest.NewRequest("POST", "/api/v1/retailcrm/make-call", nil)
			req.PostForm = tc.form
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			var body struct {
				Success  bool
				ErrorMsg string
				CallID   string
			}
			if err := json.NewDecoder(w.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if w.Code != tc.status || body.Success != (tc.status == 200) || (body.ErrorMsg+body.CallID) != tc.answer {
				t.Fatalf("%d %+v", w.Code, body)
			}
			if (asked == nil) != (tc.want == nil) || (asked != nil && *asked != *tc.want) {
				t.Fatalf("dialled %+v, want %+v", asked, tc.want)
			}
		})
	}
	if (&Link{}).Routes(nil) != nil {
		t.Fatal("routes without RetailCRM")
	}
}
