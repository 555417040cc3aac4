package crmlink

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"

	"callgate/gateway/api"
	"callgate/gateway/store"
)

// Dial places a click-to-call for an employee (the API's dialer).
type Dial func(api.ClickToCallRequest) (string, error)

// Routes are the endpoints CRMs call back on through the tunnel: RetailCRM's
// makeCallUrl, placing calls through dial.
func (l *Link) Routes(dial Dial) map[string]http.Handler {
	if l.retailUsers == nil {
		return nil
	}
	h := &makeCall{store: l.deps.Store, dir: l.deps.Directory, users: l.retailUser, dial: dial, log: l.log}
	return map[string]http.Handler{
		"GET /api/v1/retailcrm/make-call":  h,
		"POST /api/v1/retailcrm/make-call": h,
	}
}

// makeCall is RetailCRM's makeCallUrl.
type makeCall struct {
	store *store.Store
	dir   Directory
	users func(int) string // RetailCRM user -> employee
	dial  Dial
	log   *slog.Logger
}

func retailAnswer(w http.ResponseWriter, status int, body map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body["success"] = status == http.StatusOK
	_ = json.NewEncoder(w).Encode(body)
}

// retailMakeCall is RetailCRM's makeCallUrl: a manager clicked a phone
// number. RetailCRM proves who it is with the clientId it was given at
// registration; code (extension) or userId says which manager; externalPhone
// which shop line to call from.
func (m *makeCall) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		retailAnswer(w, http.StatusBadRequest, map[string]any{"errorMsg": "bad parameters"})
		return
	}
	client, err := m.store.Once(retailClientID, nil)
	if err != nil || len(client) == 0 || subtle.ConstantTimeCompare(client, []byte(r.Form.Get("clientId"))) != 1 {
		m.log.Warn("makeCallUrl refused: wrong clientId", "client", api.ClientAddr(r))
		retailAnswer(w, http.StatusForbidden, map[string]any{"errorMsg": "wrong clientId"})
		return
	}
	employee, line := "", ""
	if code := r.Form.Get("code"); code != "" {
		if emp, ok := m.dir.ByExtension(code); ok {
			employee, line = emp.ID, code
		}
	}
	if employee == "" {
		if id, err := strconv.Atoi(r.Form.Get("userId")); err == nil && id > 0 {
			employee = m.users(id)
		}
	}
	if employee == "" {
		retailAnswer(w, http.StatusNotFound, map[string]any{"errorMsg": "no employee with this code or userId"})
		return
	}
	if emp, ok := m.dir.Employee(employee); ok && !slices.Contains(emp.Extensions, line) {
		line = ""
	}
	id, err := m.dial(api.ClickToCallRequest{Employee: employee, Number: r.Form.Get("phone"), Line: line, FromNumber: r.Form.Get("externalPhone")})
	var de *api.DialError
	if errors.As(err, &de) {
		retailAnswer(w, de.Status, map[string]any{"errorMsg": de.Message, "code": de.Code})
		return
	}
	if err != nil {
		retailAnswer(w, http.StatusInternalServerError, map[string]any{"errorMsg": "the call could not be placed"})
		return
	}
	retailAnswer(w, http.StatusOK, map[string]any{"callId": id})
}
