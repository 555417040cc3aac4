package api

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"callgate/gateway/directory"
)

// Phone mints the browser phone's SIP credentials (gateway/directory).
type Phone interface {
	MintPass(employee, extension, session string, ttl time.Duration, now time.Time) (directory.Pass, error)
	RevokePasses(session string)
}

// PassTTL is how long a browser phone's password is good for; the console
// asks for a new one well before (PhonePass.Refresh).
const PassTTL = time.Hour

// PhonePass is what the console's browser phone registers with.
type PhonePass struct {
	Extension string    `json:"extension"`
	URI       string    `json:"uri"` // the address of record, sip:<extension>@<host>
	Username  string    `json:"username"`
	Password  string    `json:"password"` // minted for this session, never the SIP password
	Realm     string    `json:"realm"`
	WebSocket string    `json:"ws_url"` // ws:// or wss://, the HTTP listener's /sip as the browser reaches it
	Expires   time.Time `json:"expires"`
	Refresh   int       `json:"refresh_seconds"` // ask again after this long
	Lines     []string  `json:"lines"`           // the employee's extensions, any of which the phone may register
}

// phoneRequest is the optional body of POST /api/v1/phone.
type phoneRequest struct {
	Extension string `json:"extension"` // the line to register; empty for the first
}

// phonePass answers POST /api/v1/phone: the logged-in employee's browser
// phone credentials for one of their lines (the first, or the body's
// extension), good for PassTTL or until the session logs out. API tokens
// get none: a browser phone belongs to a person's console session.
func (s *Server) phonePass(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(CookieName)
	p := principal(r)
	if err != nil || bearer(r) != "" || p.Kind == "crm" || p.Name == "" {
		Error(w, http.StatusForbidden, "console_only", "the browser phone is for an employee's console login, not for API tokens")
		return
	}
	var req phoneRequest
	if r.ContentLength != 0 {
		if !jsonBody(r) {
			Error(w, http.StatusUnsupportedMediaType, "unsupported_media_type", `send the body, when there is one, as Content-Type: application/json: {"extension": "<one of your lines>"}`)
			return
		}
		if answered, err := readJSON(w, r, maxSmallBody, &req); answered {
			return
		} else if err != nil {
			Error(w, http.StatusBadRequest, "bad_request", `the body is {"extension": "<one of your lines>"}: `+err.Error())
			return
		}
	}
	k := sha256.Sum256([]byte(c.Value))
	pass, err := s.Phone.MintPass(p.Name, req.Extension, hex.EncodeToString(k[:]), PassTTL, time.Now())
	switch {
	case errors.Is(err, directory.ErrNoLine):
		Error(w, http.StatusForbidden, "not_your_line", err.Error())
		return
	case err != nil:
		Error(w, http.StatusConflict, "no_extension", err.Error())
		return
	}
	scheme := "ws"
	if s.Proxies.HTTPS(r) {
		scheme = "wss"
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		host = h
	}
	if host == "" {
		host = "callgate.invalid"
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	writeJSON(w, http.StatusOK, PhonePass{Extension: pass.Extension, URI: "sip:" + pass.Extension + "@" + host, Username: pass.Extension,
		Password: pass.Password, Realm: pass.Realm, WebSocket: scheme + "://" + r.Host + "/sip", Expires: pass.Expires, Refresh: int(PassTTL.Seconds() / 3), Lines: pass.Lines})
}
