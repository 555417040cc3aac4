// Package digest is the server side of SIP digest authentication (RFC 3261
// §22, RFC 8760 for SHA-256): challenges, self-validating nonces with a
// lifetime, and verification with qop=auth nonce-count replay protection.
//
// sipgo only implements the client side; the client side's algorithm code
// (github.com/icholy/digest) is reused here so both ends compute responses
// the same way.
package digest

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"strings"
	"sync"
	"time"
)

// Algorithm is a digest hash algorithm name as written on the wire.
type Algorithm string

// Supported algorithms.
const (
	MD5    Algorithm = "MD5"
	SHA256 Algorithm = "SHA-256"
)

// HA1 computes H(user:realm:password) for alg, the value a server keeps
// instead of the password.
func HA1(alg Algorithm, user, realm, password string) string {
	var h hash.Hash
	if alg == SHA256 {
		h = sha256.New()
	} else {
		h = md5.New()
	}
	h.Write([]byte(user + ":" + realm + ":" + password))
	return hex.EncodeToString(h.Sum(nil))
}

// Secrets gives the stored HA1 of a user for an algorithm.
type Secrets interface {
	HA1(user string, alg Algorithm) (ha1 string, ok bool)
}

// Alternates is implemented by Secrets that hold more secrets for a user
// than the one HA1 gives: the browser phone's short-lived passwords beside
// the extension's SIP password. They are tried only when HA1's fails, so
// a desk phone pays nothing for them.
type Alternates interface {
	AlternateHA1s(user string, alg Algorithm) []Alternate
}

// Alternate is one more secret of a user: its HA1, and a tag saying whose
// it is (the console session a browser phone's pass was minted for), which
// VerifyTag reports when it matched.
type Alternate struct {
	HA1 string
	Tag string
}

// Result is the outcome of checking a request's credentials.
type Result int

// Results of Verify.
const (
	// NoCredentials: the request carries no credentials for our realm; challenge it.
	NoCredentials Result = iota
	// OK: the credentials are valid.
	OK
	// Stale: the nonce expired, is not ours (e.g. from before a restart) or
	// its count was reused; challenge again with stale=true. Not a failure.
	Stale
	// Failed: unknown user or wrong password. Counts as an authentication failure.
	Failed
	// Malformed: the Authorization header cannot be parsed.
	Malformed
)

func (r Result) String() string {
	return [...]string{"no-credentials", "ok", "stale", "failed", "malformed"}[r]
}

// Server issues challenges and verifies answers. It is safe for concurrent use.
type Server struct {
	realm    string
	algs     []Algorithm
	lifetime time.Duration
	key      [32]byte
	now      func() time.Time
	counts   ncTable
	macs     sync.Pool // HMAC-SHA256 keyed with key: setting one up costs more than using it
	dummy    map[Algorithm]string
}

// NewServer returns a server for realm offering algs in preference order.
func NewServer(realm string, algs []Algorithm, nonceLifetime time.Duration) *Server {
	s := &Server{realm: realm, algs: algs, lifetime: nonceLifetime, now: time.Now}
	if _, err := rand.Read(s.key[:]); err != nil {
		panic("digest: no randomness: " + err.Error())
	}
	s.counts.init(nonceLifetime)
	// An unknown user's answer is checked against a random secret, so that
	// it costs the same time as a known user's wrong password.
	var pw [16]byte
	if _, err := rand.Read(pw[:]); err != nil {
		panic("digest: no randomness: " + err.Error())
	}
	s.dummy = map[Algorithm]string{}
	for _, a := range algs {
		s.dummy[a] = HA1(a, "", realm, hex.EncodeToString(pw[:]))
	}
	s.macs.New = func() any { return hmac.New(sha256.New, s.key[:]) }
	return s
}

// Realm returns the realm.
func (s *Server) Realm() string { return s.realm }

// nonce layout before base64: 8 bytes expiry-base time (unix ms), 8 random
// bytes, 12 bytes of HMAC over the first 16.
const (
	nonceRaw = 28
	nonceLen = (nonceRaw*8 + 5) / 6
)

var b64 = base64.RawURLEncoding

// appendNonce appends a fresh nonce.
func (s *Server) appendNonce(dst []byte) []byte {
	var raw [nonceRaw]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(s.now().UnixMilli()))
	if _, err := rand.Read(raw[8:16]); err != nil {
		panic("digest: no randomness: " + err.Error())
	}
	s.sign(raw[:16], raw[16:])
	return b64.AppendEncode(dst, raw[:])
}

func (s *Server) sign(msg, out []byte) {
	m := s.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(msg)
	var sum [32]byte
	copy(out, m.Sum(sum[:0]))
	s.macs.Put(m)
}

// checkNonce returns the nonce's id and whether it is ours and still valid.
func (s *Server) checkNonce(n string) (id [8]byte, valid bool) {
	if len(n) != nonceLen {
		return id, false
	}
	var raw [nonceRaw]byte
	if _, err := b64.Decode(raw[:], []byte(n)); err != nil {
		return id, false
	}
	var mac [12]byte
	s.sign(raw[:16], mac[:])
	if !hmac.Equal(mac[:], raw[16:]) {
		return id, false
	}
	issued := time.UnixMilli(int64(binary.BigEndian.Uint64(raw[:8])))
	if s.now().Sub(issued) > s.lifetime {
		return id, false
	}
	copy(id[:], raw[8:16])
	return id, true
}

// size is the length of the algorithm's hash in bytes.
func (a Algorithm) size() int {
	if a == SHA256 {
		return sha256.Size
	}
	return md5.Size
}

// expected appends to dst, in lower-case hex, the response a client knowing
// ha1 sends (RFC 7616 §3.4.1, RFC 2617 without qop), without allocating:
// it runs for every authenticated request, and again for each browser
// phone pass tried.
func expected(dst []byte, alg Algorithm, ha1, method, uri, nonce, cnonce string, nc uint32, qop bool) []byte {
	var buf [512]byte
	b := append(buf[:0], method...)
	b = append(b, ':')
	b = append(b, uri...)
	var ha2 [64]byte
	h2 := hexSum(ha2[:0], alg, b)
	b = append(buf[:0], ha1...)
	b = append(b, ':')
	b = append(b, nonce...)
	b = append(b, ':')
	if qop {
		const digits = "0123456789abcdef"
		for shift := 28; shift >= 0; shift -= 4 {
			b = append(b, digits[nc>>uint(shift)&0xf])
		}
		b = append(b, ':')
		b = append(b, cnonce...)
		b = append(b, ":auth:"...)
	}
	b = append(b, h2...)
	return hexSum(dst, alg, b)
}

func hexSum(dst []byte, alg Algorithm, data []byte) []byte {
	if alg == SHA256 {
		sum := sha256.Sum256(data)
		return hex.AppendEncode(dst, sum[:])
	}
	sum := md5.Sum(data)
	return hex.AppendEncode(dst, sum[:])
}

// Challenges returns one WWW-Authenticate (or Proxy-Authenticate) value per
// offered algorithm, in preference order, all sharing a fresh nonce.
func (s *Server) Challenges(stale bool) []string {
	var nonce [nonceLen]byte
	s.appendNonce(nonce[:0])
	out := make([]string, len(s.algs))
	for i, a := range s.algs {
		out[i] = string(s.appendChallenge(make([]byte, 0, 96+len(s.realm)), a, nonce[:], stale))
	}
	return out
}

// AppendChallenges appends the header lines Challenges gives, each as
// "name: value" ended by CRLF, without allocating: the registrar's UDP
// fast path writes them straight into its answer.
func (s *Server) AppendChallenges(dst []byte, name string, stale bool) []byte {
	var nonce [nonceLen]byte
	s.appendNonce(nonce[:0])
	for _, a := range s.algs {
		dst = append(append(dst, name...), ": "...)
		dst = append(s.appendChallenge(dst, a, nonce[:], stale), "\r\n"...)
	}
	return dst
}

func (s *Server) appendChallenge(dst []byte, a Algorithm, nonce []byte, stale bool) []byte {
	dst = append(dst, `Digest realm="`...)
	dst = append(dst, s.realm...)
	dst = append(dst, `", nonce="`...)
	dst = append(dst, nonce...)
	dst = append(dst, `", algorithm=`...)
	dst = append(dst, a...)
	dst = append(dst, `, qop="auth"`...)
	if stale {
		dst = append(dst, `, stale=true`...)
	}
	return dst
}

// Verify checks the Authorization header value auth of a request with the
// given method. reqID identifies the request apart from retransmissions
// (e.g. a hash of Call-ID and CSeq) so that a retransmitted request reusing
// a nonce count is accepted while a replay of it is not. It returns the
// authenticated user name (also for Failed, for accounting).
func (s *Server) Verify(method, auth string, reqID uint64, secrets Secrets) (string, Result) {
	user, res, _ := s.VerifyTag(method, auth, reqID, secrets)
	return user, res
}

// VerifyTag is Verify that also names the Alternate that matched by its
// tag ("" when the user's own HA1 did).
func (s *Server) VerifyTag(method, auth string, reqID uint64, secrets Secrets) (user string, res Result, tag string) {
	if auth == "" {
		return "", NoCredentials, ""
	}
	cred, ok := parseCredentials(auth)
	if !ok {
		return "", Malformed, ""
	}
	if cred.realm != s.realm {
		return cred.username, NoCredentials, ""
	}
	if cred.username == "" || cred.response == "" || cred.uri == "" || cred.userhash {
		return cred.username, Malformed, ""
	}
	alg := Algorithm(strings.ToUpper(cred.algorithm))
	if alg == "" {
		alg = MD5
	}
	if alg == "SHA256" {
		alg = SHA256
	}
	offered := false
	for _, a := range s.algs {
		offered = offered || a == alg
	}
	if !offered {
		return cred.username, NoCredentials, ""
	}
	id, valid := s.checkNonce(cred.nonce)
	if !valid {
		return cred.username, Stale, ""
	}
	ha1, known := secrets.HA1(cred.username, alg)
	if !known {
		ha1 = s.dummy[alg]
	}
	qop := false
	switch {
	case cred.qop == "":
	case strings.EqualFold(cred.qop, "auth"):
		qop = true
		if cred.nc <= 0 || cred.cnonce == "" {
			return cred.username, Malformed, ""
		}
	default:
		return cred.username, Malformed, ""
	}
	// The answer as sent, in lower case, to compare in constant time.
	var got [64]byte
	if len(cred.response) != 2*alg.size() {
		return cred.username, Failed, ""
	}
	for i := range len(cred.response) {
		c := cred.response[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		got[i] = c
	}
	match := func(ha1 string) bool {
		var want [64]byte
		return subtle.ConstantTimeCompare(got[:len(cred.response)], expected(want[:0], alg, ha1, method, cred.uri, cred.nonce, cred.cnonce, uint32(cred.nc), qop)) == 1
	}
	ok = match(ha1)
	if !ok || !known {
		ok = false
		if alt, has := secrets.(Alternates); has {
			for _, a := range alt.AlternateHA1s(cred.username, alg) {
				if match(a.HA1) {
					ok, tag = true, a.Tag
					break
				}
			}
		}
		if !ok {
			return cred.username, Failed, ""
		}
	}
	if qop && !s.counts.use(id, uint32(cred.nc), reqID, s.now()) {
		return cred.username, Stale, ""
	}
	return cred.username, OK, tag
}

// ncTable remembers the highest nonce count used with each nonce so that a
// captured request cannot be replayed. Entries live in two generations that
// rotate every nonce lifetime, so expired nonces are forgotten in O(1).
type ncTable struct {
	shards   [32]ncShard
	lifetime time.Duration
}

type ncShard struct {
	mu      sync.Mutex
	cur     map[[8]byte]ncEntry
	prev    map[[8]byte]ncEntry
	rotated time.Time
}

type ncEntry struct {
	nc    uint32
	reqID uint64
}

func (t *ncTable) init(lifetime time.Duration) {
	t.lifetime = lifetime
	for i := range t.shards {
		t.shards[i].cur = map[[8]byte]ncEntry{}
		t.shards[i].prev = map[[8]byte]ncEntry{}
	}
}

func (t *ncTable) use(id [8]byte, nc uint32, reqID uint64, now time.Time) bool {
	sh := &t.shards[id[0]%uint8(len(t.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if now.Sub(sh.rotated) > t.lifetime {
		sh.prev, sh.cur = sh.cur, make(map[[8]byte]ncEntry, len(sh.cur))
		sh.rotated = now
	}
	e, ok := sh.cur[id]
	if !ok {
		e, ok = sh.prev[id]
	}
	switch {
	case !ok || nc > e.nc:
		sh.cur[id] = ncEntry{nc: nc, reqID: reqID}
		return true
	case nc == e.nc && reqID == e.reqID:
		return true // a retransmission of the request that used this count
	}
	return false
}
