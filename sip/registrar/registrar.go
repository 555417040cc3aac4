// Package registrar is the SIP registrar for the office phones: it
// authenticates REGISTER requests with digest, keeps their bindings in a
// location table, and answers where each extension can be reached. It
// remembers the address a REGISTER came from, so a phone behind NAT is
// reached there whatever its Contact says.
package registrar

import (
	"errors"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"callgate/sip/digest"
	"callgate/sip/guard"
	"callgate/sip/location"
	"callgate/sip/sanity"
	"callgate/sip/sipnet"

	"github.com/emiago/sipgo/sip"
)

// Config is the registrar's policy.
type Config struct {
	MinExpires     time.Duration
	MaxExpires     time.Duration
	DefaultExpires time.Duration
	MaxContacts    int
	AllowNetworks  []netip.Prefix
	ServerName     string // Server header
	// Scanners are the user agents dropped without an answer; nil or
	// empty drops none.
	Scanners *guard.Scanners
	// Log receives dropped scanners (at most once a minute per IP) at
	// warning level; nil logs nothing.
	Log *slog.Logger
}

// Stats are the registrar's counters.
type Stats struct {
	Registers    atomic.Uint64
	AuthFailures atomic.Uint64
	Dropped      atomic.Uint64 // requests from banned sources, not answered
	Refused      atomic.Uint64 // from networks outside allow_networks
	Scanners     atomic.Uint64 // requests from scanner user agents, not answered
}

// Registrar handles REGISTER requests. It is safe for concurrent use.
type Registrar struct {
	// cfg is the policy in force; SetConfig swaps it while running.
	cfg     atomic.Pointer[Config]
	auth    *digest.Server
	secrets digest.Secrets
	// deskSecrets are secrets without their Alternates (primaryOnly), for
	// requests that do not come over WebSocket.
	deskSecrets digest.Secrets
	guard       *guard.Guard
	loc         *location.Table
	seed        maphash.Seed
	now         func() time.Time
	quiet       *guard.Quieter
	Stats       Stats
}

// New returns a registrar. secrets gives the HA1 of each extension; the
// digest user name must be the extension being registered.
func New(cfg Config, auth *digest.Server, secrets digest.Secrets, g *guard.Guard, loc *location.Table) *Registrar {
	r := &Registrar{auth: auth, secrets: secrets, deskSecrets: primaryOnly{secrets}, guard: g, loc: loc, seed: maphash.MakeSeed(), now: time.Now,
		quiet: guard.NewQuieter(time.Minute)}
	r.cfg.Store(&cfg)
	return r
}

// SetConfig puts a new policy in force (a configuration reload): the
// admitted networks, the expiry limits, the contacts per extension and
// the scanners apply to the next request. Bindings already made stay as
// they are until they are refreshed or expire.
func (r *Registrar) SetConfig(cfg Config) { r.cfg.Store(&cfg) }

// conf is the policy in force.
func (r *Registrar) conf() *Config { return r.cfg.Load() }

// Location returns the binding table.
func (r *Registrar) Location() *location.Table { return r.loc }

// Allowed reports whether phones may register from ip.
func (r *Registrar) Allowed(ip netip.Addr) bool {
	return sipnet.Networks(r.conf().AllowNetworks).Contains(ip)
}

// Source describes where a request came from and on which of our listeners.
type Source struct {
	Addr      netip.AddrPort
	Local     netip.AddrPort
	Transport sipnet.Transport
}

var errOutOfOrder = errors.New("out of order")

// primaryOnly hides the Alternates of Secrets: the browser phone's passes
// are good over WebSocket only, so a pass that leaks cannot register a
// desk-phone binding (UDP, TCP) that would outlive its session.
type primaryOnly struct{ digest.Secrets }

// secretsFor are the secrets a request over transport t may match.
func (r *Registrar) secretsFor(t sipnet.Transport) digest.Secrets {
	if t.OverHTTP() {
		return r.secrets
	}
	return r.deskSecrets
}

// Handle processes a REGISTER and returns the response to send, or nil when
// the request must go unanswered (banned source). src must be the
// request's real source address; req.Source() is set from it.
func (r *Registrar) Handle(req *sip.Request, src Source) *sip.Response {
	req.SetSource(src.Addr.String())
	if p := sanity.Request(req); p != nil {
		return sanity.Reply(req, p) // nil where no answer may go
	}
	to, callID, cseq := req.To(), req.CallID(), req.CSeq()
	if !r.Allowed(src.Addr.Addr()) {
		r.Stats.Refused.Add(1)
		return r.reply(req, sip.StatusForbidden, "Network Not Allowed")
	}
	if r.guard.Blocked(src.Addr) {
		r.Stats.Dropped.Add(1)
		return nil
	}
	authValue := ""
	if h := req.GetHeader("Authorization"); h != nil {
		authValue = h.Value()
	}
	reqID := maphash.String(r.seed, string(*callID)+"\x00"+strconv.FormatUint(uint64(cseq.SeqNo), 10))
	user, res, pass := r.auth.VerifyTag("REGISTER", authValue, reqID, r.secretsFor(src.Transport))
	verdict := r.guard.Admit(src.Addr, user)
	if verdict == guard.Drop {
		r.Stats.Dropped.Add(1)
		return nil
	}
	switch res {
	case digest.NoCredentials, digest.Stale:
		return r.challenge(req, res == digest.Stale)
	case digest.Malformed:
		if verdict == guard.Quiet {
			r.Stats.Dropped.Add(1)
			return nil
		}
		return r.reply(req, sip.StatusBadRequest, "Malformed Authorization")
	case digest.Failed:
		return r.failed(req, src.Addr, user, ReasonWrongPassword, verdict)
	}
	if user != to.Address.User {
		// A phone may only register its own extension. The answer is the
		// one a wrong password gets, so that it does not tell a guesser
		// that the password was right.
		return r.failed(req, src.Addr, user, ReasonNotOwnAddress, verdict)
	}
	r.guard.Success(src.Addr, user)
	r.Stats.Registers.Add(1)
	return r.update(req, src, user, pass, string(*callID), cseq.SeqNo)
}

func (r *Registrar) challenge(req *sip.Request, stale bool) *sip.Response {
	res := r.reply(req, sip.StatusUnauthorized, "Unauthorized")
	for _, c := range r.auth.Challenges(stale) {
		res.AppendHeader(sip.NewHeader("WWW-Authenticate", c))
	}
	return res
}

func (r *Registrar) reply(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if name := r.conf().ServerName; name != "" {
		res.AppendHeader(sip.NewHeader("Server", name))
	}
	return res
}

type contactReq struct {
	uri      string
	instance string
	regID    uint32
	expires  time.Duration
}

// update applies RFC 3261 §10.3 steps 6-8 to aor's bindings; pass tags
// the bindings with the browser phone's pass that authenticated them.
func (r *Registrar) update(req *sip.Request, src Source, aor, pass, callID string, cseq uint32) *sip.Response {
	now := r.now()
	cfg := r.conf()
	hdrExpires := cfg.DefaultExpires
	if h := req.GetHeader("Expires"); h != nil {
		v, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
		if err != nil {
			return r.reply(req, sip.StatusBadRequest, "Invalid Expires")
		}
		hdrExpires = time.Duration(v) * time.Second
	}
	var contacts []contactReq
	wildcard := false
	for _, h := range req.GetHeaders("Contact") {
		ch, ok := h.(*sip.ContactHeader)
		if !ok {
			return r.reply(req, sip.StatusBadRequest, "Invalid Contact")
		}
		if ch.Address.Wildcard {
			wildcard = true
			continue
		}
		exp := hdrExpires
		if v, ok := ch.Params.Get("expires"); ok {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return r.reply(req, sip.StatusBadRequest, "Invalid Contact expires")
			}
			exp = time.Duration(n) * time.Second
		}
		if exp > 0 && exp < cfg.MinExpires {
			res := r.reply(req, sip.StatusIntervalToBrief, "Interval Too Brief")
			res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(int(cfg.MinExpires/time.Second))))
			return res
		}
		if exp > cfg.MaxExpires {
			exp = cfg.MaxExpires
		}
		inst, _ := ch.Params.Get("+sip.instance")
		inst = strings.Trim(inst, `"<>`)
		if !instanceLike(inst) {
			inst = "" // not echoed, not used to tell devices apart
		}
		var regID uint32
		if v, ok := ch.Params.Get("reg-id"); ok && inst != "" {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 {
				return r.reply(req, sip.StatusBadRequest, "Invalid reg-id")
			}
			regID = uint32(n)
		}
		contacts = append(contacts, contactReq{uri: ch.Address.String(), instance: inst, regID: regID, expires: exp})
	}
	if wildcard && (len(contacts) > 0 || hdrExpires != 0 || req.GetHeader("Expires") == nil) {
		return r.reply(req, sip.StatusBadRequest, "Wildcard Contact Needs Expires: 0 Alone")
	}
	ua := ""
	if h := req.GetHeader("User-Agent"); h != nil {
		ua = h.Value()
		if len(ua) > 128 {
			ua = ua[:128]
		}
	}
	var cur []location.Binding
	var err error
	if wildcard || len(contacts) > 0 {
		cur, err = r.loc.Modify(aor, now, func(cur []location.Binding) ([]location.Binding, error) {
			if wildcard {
				for _, b := range cur {
					if b.CallID == callID && b.CSeq > cseq {
						return nil, errOutOfOrder
					}
				}
				return nil, nil
			}
			for _, c := range contacts {
				nb := location.Binding{AOR: aor, Contact: c.uri, Instance: c.instance, RegID: c.regID, Source: src.Addr.String(),
					Transport: src.Transport, Local: src.Local.String(), Expires: now.Add(c.expires),
					CallID: callID, CSeq: cseq, UserAgent: ua, Since: now, Pass: pass}
				i := indexOf(cur, &nb)
				if i >= 0 {
					old := cur[i]
					if old.CallID == callID && old.CSeq > cseq {
						return nil, errOutOfOrder
					}
					nb.Since = old.Since
					if c.expires == 0 {
						cur = append(cur[:i], cur[i+1:]...)
						continue
					}
					cur[i] = nb
					continue
				}
				if c.expires > 0 {
					cur = append(cur, nb)
				}
			}
			for len(cur) > cfg.MaxContacts {
				cur = dropOldest(cur)
			}
			return cur, nil
		})
		if errors.Is(err, errOutOfOrder) {
			return r.reply(req, sip.StatusInternalServerError, "Out Of Order CSeq")
		}
	} else {
		cur = r.loc.Lookup(aor, now)
	}
	res := r.reply(req, sip.StatusOK, "OK")
	for _, b := range cur {
		left := int(b.Expires.Sub(now).Round(time.Second) / time.Second)
		v := "<" + b.Contact + ">;expires=" + strconv.Itoa(left)
		if b.Instance != "" {
			// RFC 5626 §6: the registrar echoes the instance (and reg-id),
			// or the device takes it that outbound is not supported here.
			v += `;+sip.instance="<` + b.Instance + `>"`
			if b.RegID != 0 {
				v += ";reg-id=" + strconv.FormatUint(uint64(b.RegID), 10)
			}
		}
		res.AppendHeader(sip.NewHeader("Contact", v))
	}
	res.AppendHeader(sip.NewHeader("Date", now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")))
	return res
}

func indexOf(list []location.Binding, b *location.Binding) int {
	for i := range list {
		if list[i].Same(b) {
			return i
		}
	}
	return -1
}

func dropOldest(list []location.Binding) []location.Binding {
	oldest := 0
	for i := range list {
		if list[i].Since.Before(list[oldest].Since) {
			oldest = i
		}
	}
	return append(list[:oldest], list[oldest+1:]...)
}

// instanceLike reports whether a +sip.instance value is a URN made of the
// characters RFC 8141 allows (and so is safe to echo inside a quoted
// header parameter).
func instanceLike(s string) bool {
	if len(s) < 5 || len(s) > 256 || !strings.HasPrefix(strings.ToLower(s), "urn:") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~:%!$&'()*+,;=@/?#", c) >= 0:
		default:
			return false
		}
	}
	return true
}
