package recordings

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Links mints and checks signed links to recordings: what CRMs receive,
// to fetch a recording through the tunnel without an API token. A link
// names a leg (see api.LegID) and carries its expiry and an HMAC of both.
type Links struct {
	Key     []byte           // HMAC-SHA256 key, kept in the store
	TTL     time.Duration    // lifetime of a minted link
	BaseURL string           // public URL of the API, e.g. https://callgate.example.ru
	Now     func() time.Time // nil: time.Now
}

func (l *Links) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func (l *Links) sign(leg string, exp int64) string {
	m := hmac.New(sha256.New, l.Key)
	m.Write([]byte(leg))
	m.Write([]byte{0})
	m.Write([]byte(strconv.FormatInt(exp, 10)))
	return hex.EncodeToString(m.Sum(nil))
}

// Link returns a signed URL for a leg's recording, valid for the TTL, and
// when it expires.
func (l *Links) Link(leg string) (string, time.Time) {
	exp := l.now().Add(l.TTL).Truncate(time.Second)
	q := url.Values{"exp": {strconv.FormatInt(exp.Unix(), 10)}, "sig": {l.sign(leg, exp.Unix())}}
	return strings.TrimRight(l.BaseURL, "/") + "/api/v1/recordings/" + url.PathEscape(leg) + "?" + q.Encode(), exp
}

// Lasting returns a signed URL for a leg's recording that is valid for as
// long as the recording exists (exp=0): what CRMs get, since they keep a
// call's recording link for good (RetailCRM stores recordUrl once). It
// stops working when retention deletes the file (410) or the signing key
// is replaced.
func (l *Links) Lasting(leg string) string {
	q := url.Values{"exp": {"0"}, "sig": {l.sign(leg, 0)}}
	return strings.TrimRight(l.BaseURL, "/") + "/api/v1/recordings/" + url.PathEscape(leg) + "?" + q.Encode()
}

// Verify checks a signed link's exp and sig for leg.
func (l *Links) Verify(leg, exp, sig string) error {
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return errors.New("exp is not a Unix time")
	}
	want := l.sign(leg, e)
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return errors.New("bad signature")
	}
	if e != 0 && l.now().Unix() > e { // 0: a Lasting link
		return errors.New("link expired")
	}
	return nil
}
