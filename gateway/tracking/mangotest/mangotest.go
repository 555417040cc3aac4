// Package mangotest is a strict stand-in for Mango Office's VPBX API
// call-tracking query: it checks the key and the SHA-256 signature the way
// Mango does, answers with Mango's result codes, can be made slow or
// broken, and counts what it received.
package mangotest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"callgate/crm"
	"callgate/gateway/tracking"
)

// Mango is the stand-in; URL + "/" is the API base.
type Mango struct {
	*httptest.Server
	Key, Salt string

	mu       sync.Mutex
	visitors map[string]crm.Marks // number (digits) -> visitor
	delay    time.Duration
	fail     bool
	requests int
	refused  int
}

// New starts a stand-in accepting key and salt.
func New(key, salt string) *Mango {
	m := &Mango{Key: key, Salt: salt, visitors: map[string]crm.Marks{}}
	m.Server = httptest.NewServer(http.HandlerFunc(m.serve))
	return m
}

// Bind shows number (digits) to a visitor with these UTM marks.
func (m *Mango) Bind(number string, v crm.Marks) {
	m.mu.Lock()
	m.visitors[number] = v
	m.mu.Unlock()
}

// SetSlow delays every answer by d (0: none).
func (m *Mango) SetSlow(d time.Duration) { m.mu.Lock(); m.delay = d; m.mu.Unlock() }

// SetFailing makes every request answer 5003 (technical fault).
func (m *Mango) SetFailing(f bool) { m.mu.Lock(); m.fail = f; m.mu.Unlock() }

// Requests is how many queries arrived and how many were refused for a
// wrong key, signature or parameters.
func (m *Mango) Requests() (int, int) { m.mu.Lock(); defer m.mu.Unlock(); return m.requests, m.refused }

func answer(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (m *Mango) serve(w http.ResponseWriter, req *http.Request) {
	m.mu.Lock()
	m.requests++
	delay, fail := m.delay, m.fail
	m.mu.Unlock()
	time.Sleep(delay)
	refuse := func(code int, msg string) {
		m.mu.Lock()
		m.refused++
		m.mu.Unlock()
		answer(w, http.StatusUnauthorized, map[string]any{"code": code, "message": msg})
	}
	switch {
	case fail:
		answer(w, http.StatusInternalServerError, map[string]any{"code": 5003, "message": "technical fault"})
		return
	case req.Method != http.MethodPost:
		refuse(3101, "not POST")
		return
	case req.URL.Path != "/vpbx/queries/user_info_by_dct_number":
		answer(w, http.StatusNotFound, map[string]any{"code": 4001, "message": "unsupported"})
		return
	case !strings.HasPrefix(req.Header.Get("Content-Type"), "application/x-www-form-urlencoded"):
		refuse(3104, "form expected")
		return
	}
	_ = req.ParseForm()
	key, sign, body := req.PostForm.Get("vpbx_api_key"), req.PostForm.Get("sign"), req.PostForm.Get("json")
	switch {
	case key == "" || sign == "" || body == "":
		refuse(3103, "vpbx_api_key, sign and json are required")
		return
	case key != m.Key:
		refuse(3105, "wrong vpbx_api_key")
		return
	case sign != tracking.Sign(m.Key, body, m.Salt):
		refuse(3102, "wrong sign")
		return
	}
	var q map[string]any
	if json.Unmarshal([]byte(body), &q) != nil || len(q) != 1 {
		refuse(3104, "json must be {\"number\": ...}")
		return
	}
	number, _ := q["number"].(string)
	if number == "" || strings.HasPrefix(number, "+") {
		refuse(3104, "number: digits in E.164 without +")
		return
	}
	m.mu.Lock()
	v, ok := m.visitors[number]
	m.mu.Unlock()
	if !ok {
		answer(w, http.StatusOK, map[string]any{})
		return
	}
	answer(w, http.StatusOK, map[string]any{"data": map[string]any{
		"uid": "GA1.2.3.4", "widget_id": 7, "ip": "198.51.100.7", "device": "desktop",
		"channel":      map[string]string{"source": v.Source, "medium": v.Medium, "campaign": v.Campaign, "content": v.Content, "term": v.Term},
		"current_page": map[string]string{"url": v.Page, "date": time.Now().Format("2006-01-02 15:04:05"), "title": "Shop"},
	}})
}
