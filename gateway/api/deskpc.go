package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"callgate/gateway/directory"
)

// DeskPCCookie marks a browser as the PC of a shared desk: whoever logs
// into the console there takes the desk's extension, and logging out hands
// it back (document 000: the workplace's extension follows whoever logs in
// at that PC). The mark is the desk's extension signed with a key kept in
// callgate's database, so only an admin can make one and it survives
// restarts.
const DeskPCCookie = "callgate_desk"

// deskPCMaxAge is how long a mark lasts: until an admin takes it off.
const deskPCMaxAge = 10 * 365 * 24 * 60 * 60

func (s *Server) deskPCSig(ext string) string {
	m := hmac.New(sha256.New, s.DeskKey)
	m.Write([]byte("callgate desk pc\x00" + ext))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// deskPC is the desk this browser is the PC of, or "" (no mark, a forged
// or stale one, or a desk the configuration no longer has).
func (s *Server) deskPC(r *http.Request) string {
	if s.Desks == nil || len(s.DeskKey) == 0 {
		return ""
	}
	c, err := r.Cookie(DeskPCCookie)
	if err != nil {
		return ""
	}
	ext, sig, ok := strings.Cut(c.Value, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(s.deskPCSig(ext))) || !s.isDesk(ext) {
		return ""
	}
	return ext
}

func (s *Server) logger() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

func (s *Server) isDesk(ext string) bool {
	return slices.ContainsFunc(s.Desks.Desks(), func(d directory.Desk) bool { return d.Extension == ext })
}

// takeDeskAtPC gives the desk of this browser's PC to the employee who
// just logged in there.
func (s *Server) takeDeskAtPC(r *http.Request, employee string) {
	ext := s.deskPC(r)
	if ext == "" || employee == "" {
		return
	}
	if err := s.Desks.SitAt(ext, employee); err != nil {
		s.logger().Warn("desk not taken at its PC", "desk", ext, "employee", employee, "error", err)
		return
	}
	s.logger().Info("desk taken at its PC", "desk", ext, "employee", employee)
}

// leaveDeskAtPC frees the desk of this browser's PC when the employee
// holding it logs out there.
func (s *Server) leaveDeskAtPC(r *http.Request, employee string) {
	if ext := s.deskPC(r); ext != "" && employee != "" {
		if err := s.Desks.Leave(ext, employee); err != nil {
			s.logger().Warn("desk not freed at its PC", "desk", ext, "employee", employee, "error", err)
		}
	}
}

// deskPCRoutes let an admin mark the browser they use as a desk's PC, or
// take the mark off.
func (s *Server) deskPCRoutes(mux *http.ServeMux) {
	mux.Handle("POST /api/v1/desks/{ext}/pc", s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if principal(r).Kind != "admin" {
			Error(w, http.StatusForbidden, "forbidden", "only an admin marks a browser as a desk's PC")
			return
		}
		ext := r.PathValue("ext")
		if !s.isDesk(ext) {
			Error(w, http.StatusNotFound, "desk_not_found", "no shared desk with this extension")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: DeskPCCookie, Value: ext + "." + s.deskPCSig(ext), Path: "/", MaxAge: deskPCMaxAge,
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.Proxies.HTTPS(r)})
		s.logger().Info("browser marked as a desk's PC", "desk", ext, "by", principal(r).String())
		writeJSON(w, http.StatusOK, map[string]string{"desk_pc": ext})
	})))
	mux.Handle("DELETE /api/v1/desks/pc", s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if principal(r).Kind != "admin" {
			Error(w, http.StatusForbidden, "forbidden", "only an admin takes a desk's PC mark off")
			return
		}
		s.leaveDeskAtPC(r, principal(r).Name) // the admin logged in here holds it
		http.SetCookie(w, &http.Cookie{Name: DeskPCCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.Proxies.HTTPS(r)})
		w.WriteHeader(http.StatusNoContent)
	})))
}
