package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"callgate/gateway/calls"
)

// Recordings serves recording files, to a bearer token allowed to see the
// call or to anyone holding a signed link (what CRMs receive: they fetch
// recordings through the tunnel without an API token).
type Recordings struct {
	Dir     string        // recording.dir; legs name files relative to it
	Key     []byte        // HMAC-SHA256 key, kept in the store
	TTL     time.Duration // lifetime of a minted link
	BaseURL string        // public URL of this API, e.g. https://callgate.example.ru
	// OwnOnly limits employee tokens to recordings of calls they were on.
	OwnOnly bool
	Now     func() time.Time // nil: time.Now
}

func (rc *Recordings) now() time.Time {
	if rc.Now != nil {
		return rc.Now()
	}
	return time.Now()
}

func (rc *Recordings) sign(leg string, exp int64) string {
	m := hmac.New(sha256.New, rc.Key)
	m.Write([]byte(leg))
	m.Write([]byte{0})
	m.Write([]byte(strconv.FormatInt(exp, 10)))
	return hex.EncodeToString(m.Sum(nil))
}

// Link returns a signed URL for a leg's recording, valid for the TTL.
func (rc *Recordings) Link(leg string) (string, time.Time) {
	exp := rc.now().Add(rc.TTL).Truncate(time.Second)
	q := url.Values{"exp": {strconv.FormatInt(exp.Unix(), 10)}, "sig": {rc.sign(leg, exp.Unix())}}
	return strings.TrimRight(rc.BaseURL, "/") + "/api/v1/recordings/" + url.PathEscape(leg) + "?" + q.Encode(), exp
}

// verify checks a signed link's exp and sig.
func (rc *Recordings) verify(leg, exp, sig string) error {
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return errors.New("exp is not a Unix time")
	}
	want := rc.sign(leg, e)
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return errors.New("bad signature")
	}
	if rc.now().Unix() > e {
		return errors.New("link expired")
	}
	return nil
}

// LegID names one leg's recording: the call id and the leg number.
func LegID(callID string, n int) string { return callID + "-" + strconv.Itoa(n) }

func splitLeg(id string) (string, int, bool) {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(id[i+1:])
	if err != nil || n < 0 {
		return "", 0, false
	}
	return id[:i], n, true
}

func (s *Server) recordingRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/recordings/{leg}", s.recording) // GET patterns also take HEAD
	mux.Handle("POST /api/v1/recordings/{leg}/link", s.auth(http.HandlerFunc(s.recordingLink)))
}

// findLeg resolves a leg id to its call and leg, writing the error itself.
func (s *Server) findLeg(w http.ResponseWriter, id string) (*calls.Record, *calls.Leg, bool) {
	callID, n, ok := splitLeg(id)
	if !ok {
		Error(w, http.StatusNotFound, "recording_not_found", "no such recording")
		return nil, nil, false
	}
	rec, err := s.Calls.Get(callID)
	if errors.Is(err, calls.ErrNotFound) {
		Error(w, http.StatusNotFound, "recording_not_found", "no such recording")
		return nil, nil, false
	}
	if err != nil {
		Error(w, http.StatusInternalServerError, "store_error", "call could not be read")
		return nil, nil, false
	}
	for i := range rec.Legs {
		if rec.Legs[i].N == n && rec.Legs[i].Recording != "" {
			return rec, &rec.Legs[i], true
		}
	}
	Error(w, http.StatusNotFound, "recording_not_found", "no such recording")
	return nil, nil, false
}

// mayHear reports whether p may fetch a recording of rec.
func (s *Server) mayHear(p Principal, rec *calls.Record) bool {
	if p.Kind != "employee" || !s.Recordings.OwnOnly {
		return true
	}
	return involves(rec, p.Name)
}

func (s *Server) recording(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("leg")
	q := r.URL.Query()
	if q.Has("sig") || q.Has("exp") {
		// A valid link is served whoever else failed; only bad ones count.
		if err := s.Recordings.verify(id, q.Get("exp"), q.Get("sig")); err != nil {
			keys := []string{addrKey(s.clientAddr(r)), credKey("link", q.Get("sig"))}
			s.refused(w, time.Now(), keys, func() {
				Error(w, http.StatusForbidden, "bad_link", "the recording link is invalid or has expired: "+err.Error())
			})
			return
		}
		if _, leg, ok := s.findLeg(w, id); ok {
			s.serveRecording(w, r, leg)
		}
		return
	}
	p, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	rec, leg, ok := s.findLeg(w, id)
	if !ok {
		return
	}
	if !s.mayHear(p, rec) {
		Error(w, http.StatusForbidden, "forbidden", "this token may not hear this call")
		return
	}
	s.serveRecording(w, r, leg)
}

func (s *Server) serveRecording(w http.ResponseWriter, r *http.Request, leg *calls.Leg) {
	if !filepath.IsLocal(leg.Recording) {
		Error(w, http.StatusNotFound, "recording_not_found", "no such recording")
		return
	}
	f, err := os.Open(filepath.Join(s.Recordings.Dir, leg.Recording))
	if errors.Is(err, os.ErrNotExist) {
		Error(w, http.StatusNotFound, "recording_deleted", "the recording has been deleted (retention) or was never written")
		return
	}
	if err != nil {
		Error(w, http.StatusInternalServerError, "recording_unreadable", "the recording could not be read")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		Error(w, http.StatusInternalServerError, "recording_unreadable", "the recording could not be read")
		return
	}
	w.Header().Set("Content-Type", "audio/wav")
	w.Header().Set("Content-Disposition", `inline; filename="`+filepath.Base(leg.Recording)+`"`)
	w.Header().Set("Cache-Control", "private, max-age=3600")
	extendDeadline(w, recordingDeadline(st.Size()))
	http.ServeContent(w, r, "", st.ModTime(), f) // Range, If-Range and HEAD
}

func (s *Server) recordingLink(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("leg")
	rec, _, ok := s.findLeg(w, id)
	if !ok {
		return
	}
	if !s.mayHear(principal(r), rec) {
		Error(w, http.StatusForbidden, "forbidden", "this token may not hear this call")
		return
	}
	link, exp := s.Recordings.Link(id)
	writeJSON(w, http.StatusOK, map[string]any{"url": link, "expires": exp.UTC()})
}
