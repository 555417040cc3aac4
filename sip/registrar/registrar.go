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
	FastPath     atomic.Uint64 // REGISTERs over UDP read without sipgo's parser
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
	reg := readRequest(req)
	o := r.decide(&reg, src)
	return r.response(req, &o)
}

// readRequest takes what the registrar needs from a request sipgo parsed
// and sanity passed. What it cannot read is marked, and answered only
// once the request has authenticated, as before any parsing.
func readRequest(req *sip.Request) register {
	reg := register{callID: string(*req.CallID()), cseq: req.CSeq().SeqNo, toUser: req.To().Address.User}
	if h := req.GetHeader("Authorization"); h != nil {
		reg.auth = h.Value()
	}
	if h := req.GetHeader("Expires"); h != nil {
		v, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
		reg.hasExpires, reg.expires, reg.badExpires = true, v, err != nil
	}
	for _, h := range req.GetHeaders("Contact") {
		ch, ok := h.(*sip.ContactHeader)
		switch {
		case !ok:
			reg.contacts = append(reg.contacts, contactReq{invalid: true})
			continue
		case ch.Address.Wildcard:
			reg.contacts = append(reg.contacts, contactReq{wildcard: true})
			continue
		}
		c := contactReq{uri: ch.Address.String(), expires: -1}
		if v, ok := ch.Params.Get("expires"); ok {
			n, err := strconv.ParseUint(v, 10, 32)
			c.expires, c.badExpires = int64(n), err != nil
		}
		c.instance, _ = ch.Params.Get("+sip.instance")
		if v, ok := ch.Params.Get("reg-id"); ok {
			c.regID, c.badRegID = parseRegID(v)
		}
		reg.contacts = append(reg.contacts, c)
	}
	if h := req.GetHeader("User-Agent"); h != nil {
		reg.userAgent = h.Value()
	}
	return reg
}

// response renders o as sipgo's response to req.
func (r *Registrar) response(req *sip.Request, o *outcome) *sip.Response {
	if o.silent {
		return nil
	}
	res := r.reply(req, o.code, o.reason)
	if o.challenge {
		for _, c := range r.auth.Challenges(o.stale) {
			res.AppendHeader(sip.NewHeader("WWW-Authenticate", c))
		}
	}
	if o.code == sip.StatusIntervalToBrief {
		res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(int(o.minExpires/time.Second))))
	}
	if o.code == sip.StatusOK {
		for i := range o.bindings {
			res.AppendHeader(sip.NewHeader("Contact", string(appendContact(nil, &o.bindings[i], o.now))))
		}
		res.AppendHeader(sip.NewHeader("Date", string(appendDate(nil, o.now))))
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
