package crmtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// decodeBody decodes a JSON body strictly: Megaplan answers 422 to fields it
// does not know.
func decodeBody(w http.ResponseWriter, req *http.Request, into any) bool {
	b, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		megaplanAnswer(w, 422, nil, "Invalid request: "+err.Error())
		return false
	}
	return true
}

var (
	callTypes  = []string{"unknown", "in", "out", "miss", "fail"}
	callStates = []string{"unknown", "calling", "talking", "finished", "hold"}
)

// checkCall validates a CallInfo the way the RAML types do.
func checkCall(c *MegaplanCall, needProvider bool) string {
	switch {
	case c.ContentType != "CallInfo":
		return `contentType must be "CallInfo"`
	case c.Type != "" && !slices.Contains(callTypes, c.Type):
		return "type: unknown value " + c.Type
	case c.State != "" && !slices.Contains(callStates, c.State):
		return "state: unknown value " + c.State
	case needProvider && c.ProviderID == "":
		return "providerId is required"
	}
	for _, t := range []*MegaplanTime{c.TimeFrom, c.TimeTo} {
		if t == nil {
			continue
		}
		if _, err := time.Parse(time.RFC3339, t.Value); t.ContentType != "DateTime" || err != nil {
			return "DateTime expected: {contentType: DateTime, value: ISO 8601}"
		}
	}
	for _, u := range []*MegaplanRef{c.FromUser, c.ToUser} {
		if u != nil && (u.ID == "" || !slices.Contains([]string{"Employee", "ContractorHuman", "ContractorCompany"}, u.ContentType)) {
			return "fromUser/toUser must be a link {contentType, id} to an Employee or a Contractor"
		}
	}
	return ""
}

// merge applies an update to a call: only the fields sent change.
func merge(dst, src *MegaplanCall) {
	if src.Type != "" {
		dst.Type = src.Type
	}
	if src.State != "" && src.State != dst.State {
		dst.State = src.State
		dst.States = append(dst.States, src.State)
	}
	for _, f := range []struct{ d, s *string }{{&dst.FromPhone, &src.FromPhone}, {&dst.ToPhone, &src.ToPhone}} {
		if *f.s != "" {
			*f.d = *f.s
		}
	}
	if src.FromUser != nil {
		dst.FromUser = src.FromUser
	}
	if src.ToUser != nil {
		dst.ToUser = src.ToUser
	}
	if src.TimeFrom != nil {
		dst.TimeFrom = src.TimeFrom
	}
	if src.TimeTo != nil {
		dst.TimeTo = src.TimeTo
	}
	if src.RecordLinks != nil {
		dst.RecordLinks = src.RecordLinks
	}
}

// latest finds the newest call with a providerId (m.mu held).
func (m *Megaplan) latest(provider string) *MegaplanCall {
	for i := len(m.calls) - 1; i >= 0; i-- {
		if m.calls[i].ProviderID == provider {
			return m.calls[i]
		}
	}
	return nil
}

func (m *Megaplan) newCall(c *MegaplanCall) *MegaplanCall {
	m.nextID++
	c.ID = strconv.Itoa(m.nextID)
	if c.State != "" {
		c.States = []string{c.State}
	}
	m.calls = append(m.calls, c)
	return c
}

// createCall is POST callInfo: a new call and a popup, every time it is
// called (the real API does not deduplicate creation).
func (m *Megaplan) createCall(w http.ResponseWriter, req *http.Request, mode Mode) {
	var c MegaplanCall
	if !decodeBody(w, req, &c) {
		return
	}
	if msg := checkCall(&c, false); msg != "" || c.Type == "" || c.State == "" {
		megaplanAnswer(w, 422, nil, "Invalid CallInfo: "+msg+" (type and state are required)")
		return
	}
	m.mu.Lock()
	c.Popups = 1
	out := *m.newCall(&c)
	hook := m.onPopup
	m.mu.Unlock()
	if hook != nil {
		hook(out)
	}
	committed(w, mode, out)
}

func (m *Megaplan) findCall(w http.ResponseWriter, q map[string]json.RawMessage) {
	var provider string
	if json.Unmarshal(q["providerId"], &provider) != nil || provider == "" {
		megaplanAnswer(w, 422, nil, "providerId is required")
		return
	}
	m.mu.Lock()
	c := m.latest(provider)
	var out MegaplanCall
	if c != nil {
		out = *c
	}
	m.mu.Unlock()
	if c == nil {
		megaplanAnswer(w, 404, nil, "CallInfo not found")
		return
	}
	megaplanAnswer(w, 200, out)
}

// updateCall is POST callInfo/provider: the latest call with the providerId
// moves on, and its popup with it.
func (m *Megaplan) updateCall(w http.ResponseWriter, req *http.Request, mode Mode) {
	var c MegaplanCall
	if !decodeBody(w, req, &c) {
		return
	}
	if msg := checkCall(&c, true); msg != "" {
		megaplanAnswer(w, 422, nil, "Invalid CallInfo: "+msg)
		return
	}
	m.mu.Lock()
	old := m.latest(c.ProviderID)
	var out MegaplanCall
	if old != nil {
		merge(old, &c)
		old.Popups++
		out = *old
	}
	m.mu.Unlock()
	if old == nil {
		megaplanAnswer(w, 404, nil, "CallInfo with this providerId not found")
		return
	}
	committed(w, mode, out)
}

// history is POST callInfo/history: finished calls created, or updated by
// providerId, without a popup.
func (m *Megaplan) history(w http.ResponseWriter, req *http.Request, mode Mode) {
	var list []MegaplanCall
	if !decodeBody(w, req, &list) {
		return
	}
	if len(list) == 0 || len(list) > 100 {
		megaplanAnswer(w, 422, nil, "from 1 to 100 calls per request")
		return
	}
	for i := range list {
		if msg := checkCall(&list[i], true); msg != "" {
			megaplanAnswer(w, 422, nil, "calls["+strconv.Itoa(i)+"]: "+msg)
			return
		}
	}
	m.mu.Lock()
	for i := range list {
		c := list[i]
		c.State = "finished"
		if old := m.latest(c.ProviderID); old != nil {
			merge(old, &c)
		} else {
			m.newCall(&c)
		}
	}
	m.mu.Unlock()
	committed(w, mode, map[string]int{"count": len(list)})
}

func (m *Megaplan) setContractor(w http.ResponseWriter, req *http.Request, id string) {
	var ref MegaplanRef
	if !decodeBody(w, req, &ref) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var call *MegaplanCall
	for _, c := range m.calls {
		if c.ID == id {
			call = c
		}
	}
	known := slices.ContainsFunc(m.contractors, func(c *MegaplanContractor) bool { return c.ID == ref.ID })
	switch {
	case call == nil:
		megaplanAnswer(w, 404, nil, "CallInfo not found")
	case ref.ContentType != "ContractorHuman" && ref.ContentType != "ContractorCompany" || !known:
		megaplanAnswer(w, 422, nil, "a link to an existing contractor is required")
	default:
		r := ref
		if call.Type == "out" {
			call.ToUser = &r
		} else {
			call.FromUser = &r
		}
		megaplanAnswer(w, 200, *call)
	}
}

func (m *Megaplan) callRoute(w http.ResponseWriter, q map[string]json.RawMessage) {
	var phone string
	if json.Unmarshal(q["phone"], &phone) != nil || phone == "" {
		megaplanAnswer(w, 422, nil, "phone is required")
		return
	}
	// The documented form is the digits alone ("79991231212"); a number
	// written otherwise is not matched, as a real account's lookup of a
	// literal string would not be.
	m.mu.Lock()
	if phoneDigits(phone) != phone {
		m.violations = append(m.violations, "callRoute phone "+phone+" is not in the documented form 79991231212")
	}
	m.lookups++
	emp, ok := m.routes[phone]
	m.mu.Unlock()
	route := map[string]any{"contentType": "CallRoute", "type": "all", "timeout": 20, "employees": []any{}, "users": []any{}}
	if ok {
		route["type"] = "responsible"
		route["employees"] = []MegaplanRef{{ContentType: "Employee", ID: emp}}
	}
	megaplanAnswer(w, 200, route)
}

func phoneDigits(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}

// listContractors answers contractor lists: q finds by phone (digits
// compared), or, with a sort by timeCreated, the newest first.
func (m *Megaplan) listContractors(w http.ResponseWriter, q map[string]json.RawMessage) {
	for k := range q {
		if !slices.Contains([]string{"q", "limit", "sortBy", "fields", "pageAfter"}, k) {
			megaplanAnswer(w, 422, nil, "unknown parameter "+k)
			return
		}
	}
	var fields []string
	_ = json.Unmarshal(q["fields"], &fields)
	for _, f := range fields {
		if !slices.Contains([]string{"firstName", "middleName", "lastName", "company", "position", "description", "responsibles", "contactInfo", "timeCreated", "type", "status"}, f) {
			megaplanAnswer(w, 422, nil, "unknown field "+f)
			return
		}
	}
	var text string
	_ = json.Unmarshal(q["q"], &text)
	limit := 100
	_ = json.Unmarshal(q["limit"], &limit)
	var after MegaplanRef
	_ = json.Unmarshal(q["pageAfter"], &after)
	m.mu.Lock()
	list := slices.Clone(m.contractors)
	m.mu.Unlock()
	slices.Reverse(list) // newest first
	var out []MegaplanContractor
	skipping := after.ID != ""
	for _, c := range list {
		if skipping {
			skipping = c.ID != after.ID
			continue
		}
		match := text == ""
		for _, ci := range c.ContactInfo {
			if text != "" && ci.Type == "phone" && phoneDigits(ci.Value) == phoneDigits(text) {
				match = true
			}
		}
		if match && len(out) < limit {
			out = append(out, *c)
		}
	}
	if out == nil {
		out = []MegaplanContractor{}
	}
	megaplanAnswer(w, 200, out)
}

func (m *Megaplan) createContractor(w http.ResponseWriter, req *http.Request, mode Mode) {
	var c MegaplanContractor
	if !decodeBody(w, req, &c) {
		return
	}
	if c.ContentType != "ContractorHuman" || len(c.ContactInfo) == 0 || c.ID != "" || c.TimeCreated != nil {
		megaplanAnswer(w, 422, nil, "Invalid ContractorHuman: contentType ContractorHuman and contactInfo required, id and timeCreated are read-only")
		return
	}
	m.mu.Lock()
	if m.noClients {
		m.mu.Unlock()
		megaplanAnswer(w, 403, nil, "Access denied")
		return
	}
	m.addContractor(&c)
	out := c
	m.mu.Unlock()
	committed(w, mode, out)
}

// listDeals answers GET deal by text (q) or by a filter on the client:
// {"contentType":"DealFilter","config":{"contentType":"FilterConfig",
// "termGroup":{"contentType":"FilterTermGroup","join":"and","terms":[
// {"contentType":"FilterTermRef","field":"contractor","comparison":"equals",
// "value":[{"contentType":"ContractorHuman","id":"…"}]}]}}}, the shape of
// the official SDK's contractor filter. Any other filter is refused.
func (m *Megaplan) listDeals(w http.ResponseWriter, q map[string]json.RawMessage) {
	for k := range q {
		if !slices.Contains([]string{"q", "filter", "fields", "limit"}, k) {
			megaplanAnswer(w, 422, nil, "unknown parameter "+k)
			return
		}
	}
	var fields []string
	_ = json.Unmarshal(q["fields"], &fields)
	for _, f := range fields {
		if !slices.Contains([]string{"name", "number", "state", "contractor", "manager", "program", "description"}, f) {
			megaplanAnswer(w, 422, nil, "unknown field "+f)
			return
		}
	}
	var text string
	_ = json.Unmarshal(q["q"], &text)
	var client string
	if raw, ok := q["filter"]; ok {
		var f struct {
			ContentType string `json:"contentType"`
			Config      struct {
				ContentType string `json:"contentType"`
				TermGroup   struct {
					ContentType string `json:"contentType"`
					Join        string `json:"join"`
					Terms       []struct {
						ContentType string        `json:"contentType"`
						Field       string        `json:"field"`
						Comparison  string        `json:"comparison"`
						Value       []MegaplanRef `json:"value"`
					} `json:"terms"`
				} `json:"termGroup"`
			} `json:"config"`
		}
		err := json.Unmarshal(raw, &f)
		g := f.Config.TermGroup
		if err != nil || f.ContentType != "DealFilter" || f.Config.ContentType != "FilterConfig" || g.ContentType != "FilterTermGroup" || g.Join != "and" ||
			len(g.Terms) != 1 || g.Terms[0].ContentType != "FilterTermRef" || g.Terms[0].Field != "contractor" || g.Terms[0].Comparison != "equals" ||
			len(g.Terms[0].Value) != 1 || g.Terms[0].Value[0].ID == "" ||
			!slices.Contains([]string{"ContractorHuman", "ContractorCompany"}, g.Terms[0].Value[0].ContentType) {
			megaplanAnswer(w, 422, nil, "Invalid filter")
			return
		}
		client = g.Terms[0].Value[0].ID
	}
	m.mu.Lock()
	out := []MegaplanDeal{}
	for _, d := range m.deals {
		switch {
		case client != "" && d.Contractor != nil && d.Contractor.ID == client,
			client == "" && text != "" && strings.Contains(d.Name, text):
			out = append(out, *d)
		}
	}
	m.mu.Unlock()
	megaplanAnswer(w, 200, out)
}

func (m *Megaplan) createDeal(w http.ResponseWriter, req *http.Request, mode Mode) {
	var d MegaplanDeal
	if !decodeBody(w, req, &d) {
		return
	}
	if d.ContentType != "Deal" || d.Program == nil || d.Program.ContentType != "Program" || d.Program.ID == "" {
		megaplanAnswer(w, 422, nil, "Invalid Deal: contentType Deal and program {contentType: Program, id} are required")
		return
	}
	m.mu.Lock()
	if m.noDeals[d.Program.ID] {
		m.mu.Unlock()
		megaplanAnswer(w, 403, nil, "Access denied")
		return
	}
	m.nextID++
	d.ID = strconv.Itoa(m.nextID)
	d.Number, d.State = d.ID, &MegaplanState{ContentType: "ProgramState", ID: "s-active", Name: "Новая", Type: "active"}
	m.deals = append(m.deals, &d)
	out := d
	m.mu.Unlock()
	committed(w, mode, out)
}
