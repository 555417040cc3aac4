package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"callgate/gateway/calls"
	"callgate/gateway/routing"
)

// CallStore is what the call history endpoints read.
type CallStore interface {
	List(calls.Filter) ([]calls.Record, error)
	Get(id string) (*calls.Record, error)
}

func (s *Server) callRoutes(mux *http.ServeMux) {
	mux.Handle("GET /api/v1/calls", s.auth(http.HandlerFunc(s.listCalls)))
	mux.Handle("GET /api/v1/calls/{id}", s.auth(http.HandlerFunc(s.getCall)))
}

func parseTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339, v)
}

// listCalls: GET /api/v1/calls?from=RFC3339&to=RFC3339&employee=&number=&result=&limit=
func (s *Server) listCalls(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err1 := parseTime(q.Get("from"))
	to, err2 := parseTime(q.Get("to"))
	if err := errors.Join(err1, err2); err != nil {
		Error(w, http.StatusBadRequest, "bad_time", "from and to are RFC 3339 times, e.g. 2026-11-22T10:00:00Z")
		return
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			Error(w, http.StatusBadRequest, "bad_limit", "limit is 1 to 500")
			return
		}
		limit = n
	}
	employee, number := q.Get("employee"), searchNumber(q.Get("number"), s.Region)
	if p := principal(r); p.Kind == "employee" && !p.All && !(employee == "" && wholeNumber(q.Get("number"))) {
		// An employee's token lists only their own calls, except the
		// history with one client: searched by the client's whole number,
		// it shows every call with them, whoever took it. Recordings of
		// others' calls still follow http.recording_access.
		if employee != "" && employee != p.Name {
			Error(w, http.StatusForbidden, "forbidden", "an employee token lists only that employee's calls")
			return
		}
		employee = p.Name
	}
	list, err := s.Calls.List(calls.Filter{From: from, To: to, Employee: employee, Number: number, Result: q.Get("result"), Limit: limit})
	if err != nil {
		Error(w, http.StatusInternalServerError, "store_error", "call history could not be read")
		return
	}
	if list == nil {
		list = []calls.Record{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"calls": list})
}

func (s *Server) getCall(w http.ResponseWriter, r *http.Request) {
	rec, err := s.Calls.Get(r.PathValue("id"))
	if err == nil && !principal(r).Sees(rec) {
		err = calls.ErrNotFound // do not tell an employee which other calls exist
	}
	if errors.Is(err, calls.ErrNotFound) {
		Error(w, http.StatusNotFound, "call_not_found", "no call with this id")
		return
	}
	if err != nil {
		Error(w, http.StatusInternalServerError, "store_error", "call could not be read")
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

// searchNumber is a searched number as the history holds it: a whole
// number in E.164 as routing reads it ("8 916 123-45-67" finds
// +79161234567), a fragment by its digits alone.
func searchNumber(v, region string) string {
	if region == "" {
		region = "RU"
	}
	if wholeNumber(v) {
		if n, err := routing.Normalize(v, region); err == nil {
			return n
		}
	}
	return strings.Map(func(c rune) rune {
		if c >= '0' && c <= '9' {
			return c
		}
		return -1
	}, v)
}

// wholeNumber reports whether a search is a whole phone number (10 digits
// or more) rather than a fragment that would match many clients.
func wholeNumber(v string) bool {
	n := 0
	for _, c := range v {
		switch {
		case c >= '0' && c <= '9':
			n++
		case c == '+' || c == ' ' || c == '-' || c == '(' || c == ')':
		default:
			return false
		}
	}
	return n >= 10
}
