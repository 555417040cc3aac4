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
	st := &userStatus{makeCall: h, presence: l.deps.Presence}
	return map[string]http.Handler{
		"GET /api/v1/retailcrm/make-call":    h,
		"POST /api/v1/retailcrm/make-call":   h,
		"GET /api/v1/retailcrm/user-status":  st,
		"POST /api/v1/retailcrm/user-status": st,
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

// employee checks RetailCRM's clientId and finds the manager a callback is
// about: by code (their extension, which is also the line) or userId. It
// has answered when ok is false.
func (m *makeCall) employee(w http.ResponseWriter, r *http.Request) (employee, line string, ok bool) {
	if err := r.ParseForm(); err != nil {
		retailAnswer(w, http.StatusBadRequest, map[string]any{"errorMsg": "bad parameters"})
		return "", "", false
	}
	client, err := m.store.Once(retailClientID, nil)
	if err != nil || len(client) == 0 || subtle.ConstantTimeCompare(client, []byte(r.Form.Get("clientId"))) != 1 {
		m.log.Warn("RetailCRM callback refused: wrong clientId", "path", r.URL.Path, "client", api.ClientAddr(r))
		retailAnswer(w, http.StatusForbidden, map[string]any{"errorMsg": "wrong clientId"})
		return "", "", false
	}
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
		return "", "", false
	}
	return employee, line, true
}

// userStatus is RetailCRM's changeUserStatusUrl: a manager's status
// changed (free, busy, dinner, break); inbound calls pass them by unless
// they are free.
type userStatus struct {
	*makeCall
	presence Presence
}

func (u *userStatus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	employee, _, ok := u.employee(w, r)
	if !ok {
		return
	}
	status := r.Form.Get("status")
	if u.presence == nil {
		retailAnswer(w, http.StatusServiceUnavailable, map[string]any{"errorMsg": "statuses are not kept"})
		return
	}
	if err := u.presence.Set(employee, status); err != nil {
		retailAnswer(w, http.StatusBadRequest, map[string]any{"errorMsg": "status is free, busy, dinner or break"})
		return
	}
	u.log.Info("employee status from RetailCRM", "employee", employee, "status", status)
	retailAnswer(w, http.StatusOK, map[string]any{})
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
	employee, line, ok := m.employee(w, r)
	if !ok {
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
