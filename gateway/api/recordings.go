package api

import (
	"errors"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"callgate/gateway/calls"
	"callgate/gateway/recordings"
)

// Recordings serves recording files, to a bearer token allowed to see the
// call or to anyone holding a signed link (what CRMs receive: they fetch
// recordings through the tunnel without an API token).
type Recordings struct {
	Links RecordingLinks // the signed links CRMs receive
	Files RecordingFiles // the recordings themselves
	// OwnOnly limits employee tokens to recordings of calls they were on.
	OwnOnly bool
}

// RecordingLinks mints and checks signed links to recordings.
type RecordingLinks interface {
	// Link returns a signed URL for a leg's recording and its expiry.
	Link(leg string) (string, time.Time)
	// Verify checks a signed link's exp and sig for leg.
	Verify(leg, exp, sig string) error
}

// RecordingFiles opens recordings for playback by the name a leg keeps:
// an error wrapping fs.ErrNotExist for one deleted (retention) or never
// written, recordings.ErrUnknown for a name that cannot be one.
type RecordingFiles interface {
	Open(name string) (*recordings.File, error)
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
		if err := s.Recordings.Links.Verify(id, q.Get("exp"), q.Get("sig")); err != nil {
			keys := []string{addrKey(s.clientAddr(r)), credKey("link", q.Get("sig"))}
			s.refused(w, r, time.Now(), keys, "bad_link", func() {
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
	f, err := s.Recordings.Files.Open(leg.Recording)
	switch {
	case errors.Is(err, recordings.ErrUnknown):
		Error(w, http.StatusNotFound, "recording_not_found", "no such recording")
		return
	case errors.Is(err, fs.ErrNotExist):
		// Gone for good: a CRM keeping the link learns it will never play.
		Error(w, http.StatusGone, "recording_deleted", "the recording has been deleted (retention) or was never written")
		return
	case err != nil:
		Error(w, http.StatusInternalServerError, "recording_unreadable", "the recording could not be read")
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", f.Type)
	w.Header().Set("Content-Disposition", `inline; filename="`+f.Name+`"`)
	w.Header().Set("Cache-Control", "private, max-age=3600")
	extendDeadline(w, recordingDeadline(f.Size))
	http.ServeContent(w, r, "", f.ModTime, f) // Range, If-Range and HEAD
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
	link, exp := s.Recordings.Links.Link(id)
	writeJSON(w, http.StatusOK, map[string]any{"url": link, "expires": exp.UTC()})
}
