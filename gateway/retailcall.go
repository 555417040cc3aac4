package gateway

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"

	"callgate/gateway/api"
)

// crmRoutes are the endpoints CRMs call back on through the tunnel.
func (g *Gateway) crmRoutes() map[string]http.Handler {
	if !g.cfg.CRM.RetailCRM.Enabled {
		return nil
	}
	h := http.HandlerFunc(g.retailMakeCall)
	return map[string]http.Handler{
		"GET /api/v1/retailcrm/make-call":  h,
		"POST /api/v1/retailcrm/make-call": h,
	}
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
func (g *Gateway) retailMakeCall(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		retailAnswer(w, http.StatusBadRequest, map[string]any{"errorMsg": "bad parameters"})
		return
	}
	client, err := g.store.Once("crm.retailcrm.client_id", nil)
	if err != nil || len(client) == 0 || subtle.ConstantTimeCompare(client, []byte(r.Form.Get("clientId"))) != 1 {
		g.log.Warn("makeCallUrl refused: wrong clientId", "source", r.RemoteAddr)
		retailAnswer(w, http.StatusForbidden, map[string]any{"errorMsg": "wrong clientId"})
		return
	}
	employee, line := "", ""
	if code := r.Form.Get("code"); code != "" {
		if emp, ok := g.dir.ByExtension(code); ok {
			employee, line = emp.ID, code
		}
	}
	if employee == "" {
		if id, err := strconv.Atoi(r.Form.Get("userId")); err == nil && id > 0 {
			for _, e := range g.cfg.Employees {
				if e.RetailCRMUser == id {
					employee = e.ID
				}
			}
		}
	}
	if employee == "" {
		retailAnswer(w, http.StatusNotFound, map[string]any{"errorMsg": "no employee with this code or userId"})
		return
	}
	if emp, ok := g.dir.Employee(employee); ok && !slices.Contains(emp.Extensions, line) {
		line = ""
	}
	id, err := dialer{g}.ClickToCall(api.ClickToCallRequest{Employee: employee, Number: r.Form.Get("phone"), Line: line, FromNumber: r.Form.Get("externalPhone")})
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
