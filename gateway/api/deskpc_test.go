package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"callgate/gateway/directory"

	"golang.org/x/crypto/bcrypt"
)

// memDesks is the directory's desks: who holds which.
type memDesks struct {
	mu     sync.Mutex
	holder map[string]string
}

func (d *memDesks) Desks() []directory.Desk {
	d.mu.Lock()
	defer d.mu.Unlock()
	return []directory.Desk{{Extension: "110", Name: "Ресепшн", Employee: d.holder["110"]}, {Extension: "111", Name: "Склад", Employee: d.holder["111"]}}
}

func (d *memDesks) SitAt(desk, employee string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if desk != "110" && desk != "111" {
		return directory.ErrNoDesk
	}
	d.holder[desk] = employee
	return nil
}

func (d *memDesks) Leave(desk, employee string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if employee == "" || d.holder[desk] == employee {
		delete(d.holder, desk)
	}
	return nil
}

func (d *memDesks) held(desk string) string { d.mu.Lock(); defer d.mu.Unlock(); return d.holder[desk] }

// A browser an admin marked as the reception desk's PC gives the desk to
// whoever logs into the console there and frees it when they log out; a
// login elsewhere takes nothing. Only an admin marks or unmarks; a forged
// or tampered mark, or one for a desk that is gone, is ignored; the
// session tells the console how many desks there are and which one this
// browser is.
func TestDeskFollowsThePC(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("right-password"), bcrypt.MinCost)
	desks := &memDesks{holder: map[string]string{}}
	s := &Server{Tokens: NewTokens(nil), Desks: desks, DeskKey: []byte("0123456789abcdef0123456789abcdef"),
		Sessions: NewSessions([]Account{{Employee: "admin", Role: "admin", Hash: hash}, {Employee: "ivanov", Role: "employee", Hash: hash},
			{Employee: "petrov", Role: "employee", Hash: hash}}, time.Hour, false)}
	h := s.Handler()
	type browser struct{ cookies map[string]*http.Cookie }
	do := func(b *browser, method, path, body string) (*httptest.ResponseRecorder, map[string]any) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.RemoteAddr = "192.0.2.7:40000"
		req.Header.Set("Content-Type", "application/json")
		for _, c := range b.cookies {
			req.AddCookie(c)
		}
		if csrf := b.cookies["csrf"]; csrf != nil {
			req.Header.Set("X-CSRF-Token", csrf.Value)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		for _, c := range w.Result().Cookies() {
			if c.MaxAge < 0 {
				delete(b.cookies, c.Name)
			} else {
				b.cookies[c.Name] = c
			}
		}
		var out map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &out)
		return w, out
	}
	login := func(b *browser, who string) map[string]any {
		t.Helper()
		w, info := do(b, "POST", "/api/v1/session", `{"login":"`+who+`","password":"right-password"}`)
		if w.Code != 200 {
			t.Fatalf("login %s: %d %s", who, w.Code, w.Body)
		}
		b.cookies["csrf"] = &http.Cookie{Name: "csrf", Value: info["csrf"].(string)}
		return info
	}
	logout := func(b *browser) {
		t.Helper()
		if w, _ := do(b, "DELETE", "/api/v1/session", ""); w.Code != 204 {
			t.Fatalf("logout: %d %s", w.Code, w.Body)
		}
		delete(b.cookies, "csrf")
	}

	pc, other := &browser{map[string]*http.Cookie{}}, &browser{map[string]*http.Cookie{}}
	if info := login(pc, "ivanov"); info["desks"] != 2.0 || info["desk_pc"] != nil {
		t.Fatalf("session before any mark: %v", info)
	}
	if w, _ := do(pc, "POST", "/api/v1/desks/110/pc", ""); w.Code != 403 {
		t.Fatalf("an employee marked a PC: %d", w.Code)
	}
	logout(pc)
	login(pc, "admin")
	if w, _ := do(pc, "POST", "/api/v1/desks/999/pc", ""); w.Code != 404 {
		t.Fatalf("a desk that does not exist: %d", w.Code)
	}
	if w, out := do(pc, "POST", "/api/v1/desks/110/pc", ""); w.Code != 200 || out["desk_pc"] != "110" {
		t.Fatalf("mark: %d %s", w.Code, w.Body)
	}
	mark := pc.cookies[DeskPCCookie]
	if mark == nil || !mark.HttpOnly || mark.SameSite != http.SameSiteStrictMode || mark.MaxAge < 365*24*3600 {
		t.Fatalf("the mark: %+v", mark)
	}
	logout(pc)
	if desks.held("110") != "" {
		t.Fatalf("the admin's logout left the desk with %q", desks.held("110"))
	}

	// At the PC: petrov logs in and has the desk; logging out frees it;
	// ivanov logging in next takes it.
	if info := login(pc, "petrov"); info["desk_pc"] != "110" || desks.held("110") != "petrov" {
		t.Fatalf("petrov at the PC: session %v, desk held by %q", info, desks.held("110"))
	}
	logout(pc)
	if desks.held("110") != "" {
		t.Fatalf("after petrov's logout the desk is held by %q", desks.held("110"))
	}
	login(pc, "ivanov")
	if desks.held("110") != "ivanov" {
		t.Fatalf("ivanov at the PC: desk held by %q", desks.held("110"))
	}
	// Another login at the PC hands the desk on.
	login(pc, "petrov")
	if desks.held("110") != "petrov" {
		t.Fatalf("the next login at the PC: desk held by %q", desks.held("110"))
	}
	logout(pc)

	// Elsewhere: a login takes nothing, and forged marks are ignored.
	login(other, "ivanov")
	if desks.held("110") != "" {
		t.Fatal("a login on another browser took the desk")
	}
	logout(other)
	for _, forged := range []string{"110", "110.", "111." + strings.SplitN(mark.Value, ".", 2)[1], "110.AAAA", mark.Value + "x"} {
		other.cookies[DeskPCCookie] = &http.Cookie{Name: DeskPCCookie, Value: forged}
		if info := login(other, "ivanov"); info["desk_pc"] != nil || desks.held("110") != "" || desks.held("111") != "" {
			t.Fatalf("forged mark %q: session %v, desks %v", forged, info, desks.holder)
		}
		logout(other)
	}

	// The admin takes the mark off: the PC is an ordinary browser again.
	login(pc, "admin")
	if w, _ := do(pc, "DELETE", "/api/v1/desks/pc", ""); w.Code != 204 || pc.cookies[DeskPCCookie] != nil {
		t.Fatalf("unmark: %d, cookie %v", w.Code, pc.cookies[DeskPCCookie])
	}
	logout(pc)
	login(pc, "ivanov")
	if desks.held("110") != "" {
		t.Fatal("a login at an unmarked PC took the desk")
	}
}

// FuzzDeskPCCookie: whatever a browser sends as the desk mark, reading it
// never panics, and only the mark callgate signed for a desk that exists
// names that desk.
func FuzzDeskPCCookie(f *testing.F) {
	s := &Server{Desks: &memDesks{holder: map[string]string{}}, DeskKey: []byte("0123456789abcdef0123456789abcdef")}
	valid := "110." + s.deskPCSig("110")
	for _, seed := range []string{valid, "111." + s.deskPCSig("111"), "999." + s.deskPCSig("999"), "110", ".", "", "110.\x00", strings.Repeat("1", 4096) + "."} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		req := httptest.NewRequest("GET", "/api/v1/session", nil)
		req.Header.Set("Cookie", DeskPCCookie+"="+v)
		got := s.deskPC(req)
		ext, _, _ := strings.Cut(v, ".")
		switch {
		case got == "":
		case (got == "110" || got == "111") && got == ext && v == got+"."+s.deskPCSig(got):
		default:
			t.Fatalf("mark %q read as desk %q", v, got)
		}
	})
}
