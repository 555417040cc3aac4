package api

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
	"time"

	"callgate/gateway/directory"
)

// Phone mints the browser phone's SIP credentials (gateway/directory).
type Phone interface {
	MintPass(employee, session string, ttl time.Duration, now time.Time) (directory.Pass, error)
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
}

// phonePass answers POST /api/v1/phone: the logged-in employee's browser
// phone credentials, good for PassTTL or until the session logs out. API
// tokens get none: a browser phone belongs to a person's console session.
func (s *Server) phonePass(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(CookieName)
	p := principal(r)
	if err != nil || bearer(r) != "" || p.Kind == "crm" || p.Name == "" {
		Error(w, http.StatusForbidden, "console_only", "the browser phone is for an employee's console login, not for API tokens")
		return
	}
	k := sha256.Sum256([]byte(c.Value))
	pass, err := s.Phone.MintPass(p.Name, hex.EncodeToString(k[:]), PassTTL, time.Now())
	if err != nil {
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
		Password: pass.Password, Realm: pass.Realm, WebSocket: scheme + "://" + r.Host + "/sip", Expires: pass.Expires, Refresh: int(PassTTL.Seconds() / 3)})
}
