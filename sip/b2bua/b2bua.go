// Package b2bua carries calls between the VPBX and the office phones as a
// back-to-back user agent. Every call is owned by one goroutine that
// serialises all its events (the Asterisk serializer pattern): the INVITE
// that created it, answers from the branches it forked, and every in-dialog
// request routed to it by Call-ID. The package asks a media relay for ports
// and tells it where the parties are; it never touches RTP itself.
package b2bua

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"callgate/media/relay"
	"callgate/sip/location"
	"callgate/sip/sipnet"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Direction of a call.
type Direction string

// Directions.
const (
	Inbound  Direction = "inbound"  // VPBX -> phones
	Outbound Direction = "outbound" // phone -> VPBX
	Internal Direction = "internal" // phone -> phone
)

// Account is an upstream SIP account used to place calls.
type Account struct {
	User, AuthUser, Password string
}

// Target is an extension to ring and whose it is.
type Target struct {
	Extension string
	Employee  string
}

// InboundRoute says whom an inbound call rings: the targets of each step
// ring together for RingTimeout, then the next step rings.
type InboundRoute struct {
	Steps       [][]Target
	RingTimeout time.Duration
	// StepTimeouts, if set, overrides RingTimeout per step (the
	// responsible manager's step rings for its own time).
	StepTimeouts []time.Duration
}

// FeatureDone is the router's answer to a feature code dialled on a phone
// (e.g. a shift login): no call is made, the phone gets this final
// response, whose reason phrase phones show on their screen.
type FeatureDone struct {
	Status int
	Reason string
	// AuthFailure, when set, counts the attempt as an authentication
	// failure of the phone's source with this reason (a wrong PIN), so
	// that guessing PINs leads to the same ban as guessing passwords.
	AuthFailure string
}

func (f *FeatureDone) Error() string { return fmt.Sprintf("feature code: %d %s", f.Status, f.Reason) }

// OutboundRoute says where a call placed by a phone goes.
type OutboundRoute struct {
	Internal bool
	Target   Target  // internal callee
	Account  Account // upstream account to use
	Number   string  // the number in the form the VPBX expects
	Employee string  // the caller
	// CallerName is the caller's name, shown on the callee's phone for
	// an internal call.
	CallerName string
	// Lease, if the router sets one, is held while the call lasts.
	Lease Lease
}

// Upstream says where requests to the VPBX go: its addresses in the
// order to try them (RFC 3263; resolve.Service looks them up in DNS), and
// which of them did not answer.
type Upstream interface {
	Targets(ctx context.Context) ([]sipnet.Target, error)
	Unreachable(sipnet.Target)
}

// Router decides where calls go (supplied by the gateway).
type Router interface {
	Inbound(account, caller string) (InboundRoute, error)
	Outbound(extension, dialled string) (OutboundRoute, error)
	// Transfer resolves a transfer target named by the employee on
	// extension: an extension, an employee id or a number.
	Transfer(extension, target string) (TransferRoute, error)
}

// TransferRoute is where a transfer goes: phones, or a number upstream.
type TransferRoute struct {
	Targets  []Target       // extensions to ring together
	Upstream *OutboundRoute // or a number through the VPBX
}

// Locator finds where an extension's devices are registered.
type Locator interface {
	Lookup(aor string, now time.Time) []location.Binding
}

// Authorizer authenticates requests from phones (digest, 407).
type Authorizer interface {
	AuthorizeRequest(req *sip.Request, src netip.AddrPort) (user string, res *sip.Response)
}

// Media sides, as the relay names them: A faces the outside party (or the
// caller of an internal call), B the employee.
const (
	SideA = relay.A
	SideB = relay.B
)

// CallMedia is a call's media as the B2BUA's observer gets it in
// Event.Media: it can record it and read what each side sent, not steer it.
// It is all the call model needs, so media that is not a plain RTP port pair
// (a WebRTC leg) can be recorded and measured the same way.
type CallMedia interface {
	// SetTap installs the recording tap (nil removes it).
	SetTap(relay.Tap)
	// Stats is what side has sent.
	Stats(side relay.Side) relay.Stats
}

// MediaSession is one call's media session. The B2BUA opens it, points its
// sides at the parties and closes it; the observer records and measures
// the same session through CallMedia, so nothing looks it up again by id.
type MediaSession interface {
	CallMedia
	Port(side relay.Side) int
	SetRemote(side relay.Side, addr netip.AddrPort)
	// Ringback plays a ringback tone to side as G.711 payload type pt
	// until stop is called.
	Ringback(side relay.Side, pt uint8) (stop func())
	// Park stops sending to side until its next SetRemote.
	Park(side relay.Side)
	Close()
}

// Media opens media sessions.
type Media interface {
	Open(id string) (MediaSession, error)
}

// RelayMedia opens the calls' media sessions on callgate's RTP relay: the
// relay's session is the call's media session as it is.
type RelayMedia struct{ Relay *relay.Relay }

// Open implements Media.
func (m RelayMedia) Open(id string) (MediaSession, error) {
	s, err := m.Relay.Open(id)
	if err != nil {
		return nil, err // not s: the relay returns the session already open
	}
	return s, nil
}

// Observer receives call events in order for each call.
type Observer interface {
	CallEvent(Event)
}

// EventKind names a change in a call. It is the one vocabulary of call
// events: the call model publishes it on the bus as is, the console shows
// it, and only the CRM link maps it to the connectors' own.
type EventKind string

// Event kinds.
const (
	EventRinging  EventKind = "ringing"
	EventAnswered EventKind = "answered"
	// EventTransferred: the employee side of the call moved from
	// TransferFrom to Answered.
	EventTransferred EventKind = "transferred"
	EventEnded       EventKind = "ended"
)

// Results of a call.
const (
	ResultAnswered  = "answered"
	ResultNoAnswer  = "no-answer"
	ResultBusy      = "busy"
	ResultFailed    = "failed"
	ResultAbandoned = "abandoned"
)

// Event describes a change in a call.
type Event struct {
	Kind      EventKind
	CallID    string // callgate's id for the call (also the media session id)
	Direction Direction
	Account   string   // upstream account (inbound: called; outbound: used)
	Outside   string   // the outside party's number as received or dialled
	Caller    string   // who called: a number or an extension
	Rung      []Target // who was rung
	Answered  Target   // who answered
	Result    string
	HangupBy  string // "outside", "employee", "caller", "callee", "timeout", "system"
	Reason    string
	Code      int // final SIP status toward the caller when not answered
	// Origin is "click-to-call" for calls placed through the API.
	Origin string
	// TransferFrom is who transferred the call (EventTransferred), and
	// TransferMode "blind" or "attended".
	TransferFrom Target
	TransferMode string
	At           time.Time
	// Media is the call's media session from the moment it is opened
	// (nil before, and for a call refused before it had media). The
	// session is closed by the time EventEnded arrives; its statistics
	// stay readable.
	Media CallMedia
}

// Config of the B2BUA.
type Config struct {
	Domain string // upstream SIP domain
	// LocalDomain is callgate's own SIP host: an internal caller is shown
	// as extension@LocalDomain, not at the VPBX's domain (Domain when
	// empty).
	LocalDomain string
	// Upstream says where INVITEs to the VPBX go.
	Upstream Upstream
	// Failover is how long an INVITE to one of the VPBX's addresses waits
	// for any answer before the next address is tried.
	Failover time.Duration
	// Trusted are the VPBX's source networks, kept current by the
	// gateway (trusted host names are looked up again as DNS says).
	Trusted       *sipnet.NetworkSet
	Accounts      map[string]bool
	PhoneMediaIP  netip.Addr // relay address written into SDP toward phones
	UpstreamMedia netip.Addr // relay address toward the VPBX (NAT)
	LocalUDP      string     // our UDP listener, requests over UDP leave from it
	Contact       sip.ContactHeader
	// TransportContacts are the Contacts of other transports: a dialog set up over TCP names callgate's
	// TCP listener with ;transport=tcp, or the phone would send its ACK
	// and BYE over UDP (RFC 3261 §8.1.1.8). Contact serves the rest.
	TransportContacts map[sipnet.Transport]sip.ContactHeader
	RingTimeout       time.Duration
	InternalRecord    bool
	// NewWebRTCLeg makes the media leg of a browser phone (a party over
	// WebSocket); nil refuses browsers' calls with 488 and rings none.
	NewWebRTCLeg func() (WebRTCLeg, error)
}

// B2BUA handles calls.
type B2BUA struct {
	cfg    Config
	client *sipgo.Client
	dua    *sipgo.DialogUA
	duas   map[sipnet.Transport]*sipgo.DialogUA // by transport, see Config.TransportContacts
	router Router
	loc    Locator
	auth   Authorizer
	media  Media
	obs    Observer
	log    *slog.Logger

	mu   sync.Mutex
	legs map[string]*call // by the Call-ID of either leg
	byID map[string]*call // by callgate's call id
	// inUse counts the calls each extension is talking on.
	inUse map[string]int
	held  map[*call][]string
	// peers are the remote addresses of calls' legs (PeerAt).
	peers peerSet
	// dlg has the dialogs of the legs, to match in-dialog requests.
	dlg dialogTable
	// closed is set by Shutdown: no call starts after it, so Wait cannot
	// miss one and no event follows the observer's last.
	closed bool
	wg     sync.WaitGroup
	// panics counts panics recovered (see guard and recoverPanic).
	panics atomic.Uint64
	// tcpProbe: which peers take large requests over TCP (see fitTransport).
	tcpProbe tcpProbe
	// reloaded is what a configuration reload changed of cfg (nil: nothing).
	reloaded atomic.Pointer[reloaded]
}

// New returns a B2BUA sending through client.
func New(cfg Config, client *sipgo.Client, router Router, loc Locator, auth Authorizer, media Media, obs Observer, log *slog.Logger) *B2BUA {
	if cfg.RingTimeout == 0 {
		cfg.RingTimeout = 30 * time.Second
	}
	b := &B2BUA{cfg: cfg, client: client, router: router, loc: loc, auth: auth, media: media, obs: obs, log: log,
		dua: &sipgo.DialogUA{Client: client, ContactHDR: cfg.Contact, RewriteContact: true}, duas: map[sipnet.Transport]*sipgo.DialogUA{},
		legs: map[string]*call{}, byID: map[string]*call{}, inUse: map[string]int{}, held: map[*call][]string{}}
	for tr, ct := range cfg.TransportContacts {
		b.duas[tr] = &sipgo.DialogUA{Client: client, ContactHDR: ct, RewriteContact: true}
	}
	return b
}

// duaFor is the dialog user agent whose Contact names callgate's listener
// for a transport ("UDP", "tcp"...).
func (b *B2BUA) duaFor(transport string) *sipgo.DialogUA {
	if d, ok := b.duas[sipnet.TransportOf(transport)]; ok {
		return d
	}
	return b.dua
}

// Register installs the request handlers on srv; wrap decides who may reach them.
func (b *B2BUA) Register(srv *sipgo.Server, wrap func(upstream bool, h sipgo.RequestHandler) sipgo.RequestHandler) {
	srv.OnInvite(wrap(true, b.guard(b.onInvite)))
	srv.OnAck(wrap(true, b.guard(b.inDialog)))
	srv.OnBye(wrap(true, b.guard(b.inDialog)))
	srv.OnInfo(wrap(true, b.guard(b.inDialog)))
	srv.OnRefer(wrap(true, b.guard(b.inDialog)))
	srv.OnCancel(wrap(true, b.guard(func(req *sip.Request, tx sip.ServerTransaction) {
		// A CANCEL matching a pending INVITE is handled by the transaction layer.
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
	})))
}

// Active is the number of calls in progress.
func (b *B2BUA) Active() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := map[*call]bool{}
	for _, c := range b.legs {
		seen[c] = true
	}
	return len(seen)
}

// Hangup ends a call by callgate's id (e.g. after a media timeout).
func (b *B2BUA) Hangup(id, reason string) bool {
	b.mu.Lock()
	c := b.byID[id]
	b.mu.Unlock()
	return c != nil && c.post(func() { c.hangup("timeout", reason) })
}

// HangupByAPI ends a call on a request through the API.
func (b *B2BUA) HangupByAPI(id string) bool {
	b.mu.Lock()
	c := b.byID[id]
	b.mu.Unlock()
	return c != nil && c.post(func() { c.hangup("api", "hung up through the API") })
}

// Busy reports whether an extension is talking on a call.
func (b *B2BUA) Busy(extension string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inUse[extension] > 0
}

// occupy marks an extension as talking on c until c ends.
func (b *B2BUA) occupy(c *call, extension string) {
	if extension == "" {
		return
	}
	b.mu.Lock()
	b.inUse[extension]++
	b.held[c] = append(b.held[c], extension)
	b.mu.Unlock()
}

// vacate frees one extension c occupied (its employee left the call).
func (b *B2BUA) vacate(c *call, extension string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	held := b.held[c]
	for i, ext := range held {
		if ext == extension {
			b.held[c] = append(held[:i:i], held[i+1:]...)
			if b.inUse[ext]--; b.inUse[ext] <= 0 {
				delete(b.inUse, ext)
			}
			return
		}
	}
}

// release frees the extensions c occupied.
func (b *B2BUA) release(c *call) {
	b.mu.Lock()
	for _, ext := range b.held[c] {
		if b.inUse[ext]--; b.inUse[ext] <= 0 {
			delete(b.inUse, ext)
		}
	}
	delete(b.held, c)
	b.mu.Unlock()
}

func (b *B2BUA) bind(callID string, c *call) {
	b.mu.Lock()
	b.legs[callID] = c
	b.mu.Unlock()
}

func (b *B2BUA) unbind(callID string) {
	b.mu.Lock()
	delete(b.legs, callID)
	b.releaseDialogLocked(callID, time.Now())
	b.mu.Unlock()
}

func (b *B2BUA) lookup(callID string) *call {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.legs[callID]
}

// trusted reports whether a request's source is one of the VPBX's.
func (b *B2BUA) trusted(src string) bool {
	return b.cfg.Trusted.ContainsSource(src)
}

// inDialog routes ACK, BYE, INFO, REFER and re-INVITE to the call owning
// the dialog they match (Call-ID, both tags and the sender), before
// anything treats them as new.
func (b *B2BUA) inDialog(req *sip.Request, tx sip.ServerTransaction) {
	c, d, kind, why := b.dialogOf(req)
	switch kind {
	case matchNone:
		b.refuseInDialog(req, tx, why)
		return
	case matchReleased:
		answerReleased(req, tx)
		return
	}
	if req.IsAck() {
		// Not through the call's goroutine: it may be the one waiting for
		// this ACK (sipgo's answer retransmits the 2xx until it comes).
		if c.caller != nil && req.CallID().Value() == c.callerCallID {
			_ = c.caller.ReadAck(req, tx)
		}
		return
	}
	done := make(chan struct{})
	if !c.post(func() {
		if b.stillBound(c, d) {
			c.onRequest(req, tx)
		} else {
			answerReleased(req, tx)
		}
		close(done)
	}) {
		answerReleased(req, tx)
		return
	}
	// The transaction must outlive the handler until the call has answered it.
	select {
	case <-done:
	case <-c.closed:
		// The call ended before it got to this request (e.g. crossing BYEs):
		// unless the request itself ended it, answer for it.
		select {
		case <-done:
		case <-time.After(50 * time.Millisecond):
			answerReleased(req, tx)
		}
	case <-time.After(32 * time.Second):
	}
}

func (b *B2BUA) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if req.To().Params.Has("tag") {
		b.inDialog(req, tx)
		return
	}
	if b.lookup(req.CallID().Value()) != nil {
		return // a retransmission the transaction layer did not absorb
	}
	if !b.begin() {
		res := sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Shutting Down", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", "30"))
		_ = tx.Respond(res)
		return
	}
	defer b.wg.Done()
	src, _ := netip.ParseAddrPort(req.Source())
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if b.trusted(req.Source()) && b.isAccount(req.Recipient.User) {
		b.runInbound(req, tx)
		return
	}
	user, res := b.auth.AuthorizeRequest(req, src)
	if user == "" {
		if res != nil {
			_ = tx.Respond(res)
		}
		return
	}
	b.runOutbound(req, tx, user)
}

// sendFrom sets the local address a UDP request leaves from: local, or
// the UDP listener. Without one the kernel picks.
func (b *B2BUA) sendFrom(req *sip.Request, local string) {
	_ = sipnet.SendFrom(req, cmp.Or(local, b.cfg.LocalUDP))
}

func bg() context.Context { return context.Background() }
