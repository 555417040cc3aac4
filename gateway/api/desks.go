package api

import (
	"errors"
	"net/http"

	"callgate/gateway/directory"
)

// Desks are the shared phones whose extension follows the employee who
// logs in there (shift work).
type Desks interface {
	Desks() []directory.Desk
	SitAt(desk, employee string) error
	Leave(desk, employee string) error
}

func (s *Server) deskRoutes(mux *http.ServeMux) {
	mux.Handle("GET /api/v1/desks", s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"desks": s.Desks.Desks()})
	})))
	// An employee logs in at a desk for their shift; an admin or manager
	// may log anyone in ({"employee": "..."}).
	mux.Handle("POST /api/v1/desks/{ext}/login", s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		emp, ok := s.deskEmployee(w, r)
		if !ok {
			return
		}
		if err := s.Desks.SitAt(r.PathValue("ext"), emp); err != nil {
			deskError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"desks": s.Desks.Desks()})
	})))
	mux.Handle("POST /api/v1/desks/{ext}/logout", s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		emp, ok := s.deskEmployee(w, r)
		if !ok {
			return
		}
		if p := principal(r); p.Kind == "admin" || p.Kind == "manager" {
			emp = "" // frees the desk whoever holds it
		}
		if err := s.Desks.Leave(r.PathValue("ext"), emp); err != nil {
			deskError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"desks": s.Desks.Desks()})
	})))
}

func deskError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, directory.ErrNoDesk):
		Error(w, http.StatusNotFound, "desk_not_found", "no shared desk with this extension")
	case errors.Is(err, directory.ErrNoEmployee):
		Error(w, http.StatusNotFound, "employee_not_found", "no such employee")
	default:
		Error(w, http.StatusInternalServerError, "desk_error", err.Error())
	}
}

// deskEmployee is whom a desk request is for: the employee logged in, or
// (admin, manager) the one named in the body.
func (s *Server) deskEmployee(w http.ResponseWriter, r *http.Request) (string, bool) {
	p := principal(r)
	var body struct {
		Employee string `json:"employee"`
	}
	if r.ContentLength > 0 {
		if answered, err := readJSON(w, r, maxSmallBody, &body); answered {
			return "", false
		} else if err != nil {
			Error(w, http.StatusBadRequest, "bad_request", `send {"employee": "<id>"} or nothing`)
			return "", false
		}
	}
	switch {
	case body.Employee != "" && (p.Kind == "admin" || p.Kind == "manager"):
		return body.Employee, true
	case p.Kind == "employee" || p.Kind == "manager" || p.Kind == "admin" && p.Name != "":
		if body.Employee != "" && body.Employee != p.Name {
			Error(w, http.StatusForbidden, "forbidden", "an employee logs in only themselves")
			return "", false
		}
		return p.Name, true
	}
	Error(w, http.StatusBadRequest, "bad_request", `name the employee: {"employee": "<id>"}`)
	return "", false
}
