package api

import (
	"net/http"

	"callgate/crm/outbox"
)

// CRMStatus reports the CRM outboxes (name "": all) or, with retry, puts a
// CRM's dead letters back in its queue and says how many.
type CRMStatus func(name string, retry bool) (map[string]outbox.Status, int, error)

func (s *Server) crmRoutes(mux *http.ServeMux) {
	mux.Handle("GET /api/v1/crm/status", s.auth(adminOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, _, _ := s.CRM("", false)
		out := map[string]any{}
		for name, v := range st {
			out[name] = map[string]any{"depth": v.Depth, "oldest_age_seconds": v.OldestAge.Seconds(), "dead_letters": v.Dead, "last_error": v.LastError}
		}
		writeJSON(w, http.StatusOK, map[string]any{"crm": out})
	}))))
	mux.Handle("POST /api/v1/crm/{name}/retry", s.auth(adminOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, n, err := s.CRM(r.PathValue("name"), true)
		if err != nil {
			Error(w, http.StatusNotFound, "crm_not_enabled", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"requeued": n})
	}))))
}
