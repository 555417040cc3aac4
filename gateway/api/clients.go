package api

import (
	"context"
	"net/http"
	"time"

	"callgate/crm"
)

// ClientLookup finds a caller in the CRMs by phone (nil, nil: unknown).
type ClientLookup func(ctx context.Context, phone string) (*crm.Client, error)

func (s *Server) clientRoutes(mux *http.ServeMux) {
	mux.Handle("GET /api/v1/clients", s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		phone := r.URL.Query().Get("phone")
		if phone == "" || len(phone) > 32 {
			Error(w, http.StatusBadRequest, "bad_phone", "phone is the client's number, e.g. +79161234567")
			return
		}
		// The popup waits for this: a slow CRM gets a second and a half.
		ctx, cancel := context.WithTimeout(r.Context(), 1500*time.Millisecond)
		defer cancel()
		c, err := s.Clients(ctx, phone)
		switch {
		case err != nil && c == nil:
			Error(w, http.StatusBadGateway, "crm_unavailable", "the CRMs did not answer")
		case c == nil:
			Error(w, http.StatusNotFound, "client_not_found", "no CRM knows this number")
		default:
			links := []crm.Link{}
			if c.URL != "" {
				links = append(links, crm.Link{Title: c.CRM, URL: c.URL})
			}
			deals := c.Deals
			if deals == nil {
				deals = []crm.Link{}
			}
			writeJSON(w, http.StatusOK, map[string]any{"crm": c.CRM, "name": c.Name, "company": c.Company, "site": c.Site, "links": links, "deals": deals})
		}
	})))
}
