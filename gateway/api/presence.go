package api

import (
	"net/http"

	"callgate/gateway/presence"
)

// Presence is the employees' statuses: free, busy, dinner or break. An
// employee who is not free is passed by inbound calls.
type Presence interface {
	Status(employee string) string
	// Set records a status the employee chose in the console (and tells
	// the CRMs that keep statuses).
	Set(employee, status string) error
}

func (s *Server) presenceRoutes(mux *http.ServeMux) {
	// The logged-in employee's own status.
	mux.Handle("GET /api/v1/presence", s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		emp, ok := presenceEmployee(w, r)
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": s.Presence.Status(emp)})
	})))
	mux.Handle("PUT /api/v1/presence", s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		emp, ok := presenceEmployee(w, r)
		if !ok {
			return
		}
		var body struct {
			Status string `json:"status"`
		}
		if answered, err := readJSON(w, r, 1<<10, &body); answered {
			return
		} else if err != nil || !presence.Valid(body.Status) {
			Error(w, http.StatusBadRequest, "bad_status", `the body is {"status": "free"|"busy"|"dinner"|"break"}`)
			return
		}
		if err := s.Presence.Set(emp, body.Status); err != nil {
			Error(w, http.StatusInternalServerError, "presence_error", "the status could not be kept")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": s.Presence.Status(emp)})
	})))
}

// presenceEmployee is whose status a request is about: the employee the
// session or token belongs to.
func presenceEmployee(w http.ResponseWriter, r *http.Request) (string, bool) {
	p := principal(r)
	if p.Kind == "crm" || p.Name == "" {
		Error(w, http.StatusBadRequest, "no_employee", "this login is not an employee's")
		return "", false
	}
	return p.Name, true
}
