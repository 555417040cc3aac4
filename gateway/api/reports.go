package api

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"callgate/gateway/calls"
)

// ReportStore is what the missed-call and statistics endpoints read.
type ReportStore interface {
	Missed(calls.MissedFilter) ([]calls.Missed, error)
	Stats(from, to time.Time, loc *time.Location, employee string) (calls.Stats, error)
}

// whose is the employee a report is limited to: an employee who may not
// see everyone's calls gets their own whatever they ask for.
func whose(r *http.Request, w http.ResponseWriter) (string, bool) {
	asked := r.URL.Query().Get("employee")
	p := principal(r)
	if p.Kind == "employee" && !p.All {
		if asked != "" && asked != p.Name {
			Error(w, http.StatusForbidden, "forbidden", "an employee sees only their own calls")
			return "", false
		}
		return p.Name, true
	}
	return asked, true
}

func (s *Server) reportRoutes(mux *http.ServeMux, store ReportStore) {
	mux.Handle("GET /api/v1/missed", s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		emp, ok := whose(r, w)
		if !ok {
			return
		}
		f := calls.MissedFilter{Employee: emp, Open: r.URL.Query().Get("open") == "1", Since: time.Now().AddDate(0, 0, -30), Limit: 500,
			OutOfHours: s.OutOfHours}
		list, err := store.Missed(f)
		if err != nil {
			Error(w, http.StatusInternalServerError, "store_error", "call history could not be read")
			return
		}
		open := 0
		for _, m := range list {
			if !m.Handled {
				open++
			}
		}
		if list == nil {
			list = []calls.Missed{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"missed": list, "open": open})
	})))
	mux.Handle("GET /api/v1/stats", s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		emp, ok := whose(r, w)
		if !ok {
			return
		}
		q := r.URL.Query()
		loc := s.Zone
		if loc == nil {
			loc = time.UTC
		}
		from, err1 := time.ParseInLocation("2006-01-02", q.Get("from"), loc)
		to, err2 := time.ParseInLocation("2006-01-02", q.Get("to"), loc)
		to = to.AddDate(0, 0, 1) // the last day is included
		if err1 != nil || err2 != nil || !to.After(from) || to.Sub(from) > 367*24*time.Hour {
			Error(w, http.StatusBadRequest, "bad_period", "from and to are dates (2026-11-01), from not after to, at most a year apart")
			return
		}
		st, err := store.Stats(from, to, loc, emp)
		if err != nil {
			Error(w, http.StatusInternalServerError, "store_error", "call history could not be read")
			return
		}
		if q.Get("format") != "csv" {
			writeJSON(w, http.StatusOK, st)
			return
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="callgate-stats-%s-%s.csv"`, q.Get("from"), q.Get("to")))
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"employee", "name", "inbound", "outbound", "answered", "missed", "talk_seconds", "avg_talk_seconds", "avg_wait_seconds"})
		for _, e := range st.Employees {
			name := e.Employee
			if s.Sessions != nil && s.Sessions.Name(e.Employee) != "" {
				name = s.Sessions.Name(e.Employee)
			}
			f := func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
			_ = cw.Write([]string{e.Employee, name, strconv.Itoa(e.Inbound), strconv.Itoa(e.Outbound), strconv.Itoa(e.Answered),
				strconv.Itoa(e.Missed), f(e.TalkSeconds), f(e.AvgTalk), f(e.AvgWait)})
		}
		cw.Flush()
	})))
}
