package siptest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"callgate/sip/digest"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// VPBXMode is how the stand-in answers REGISTER.
type VPBXMode int32

// Modes.
const (
	VPBXAccept    VPBXMode = iota // challenge, then 200
	VPBXForbidden                 // 403 to everything
	VPBXSilent                    // no answer at all
)

// VPBXConfig describes the stand-in.
type VPBXConfig struct {
	Listen   string            // default 127.0.0.1:0 (UDP)
	Domain   string            // e.g. vpbx400000000.mangosip.ru
	Accounts map[string]string // user -> password
	Grant    int               // seconds granted to registrations; default 300
	// ChallengeInvites makes the stand-in demand proxy digest (407) for
	// INVITEs from callgate, as the real VPBX does for outgoing calls.
	ChallengeInvites bool
	Logger           *slog.Logger
}

// Registration is one REGISTER the stand-in received and accepted or refused.
type Registration struct {
	User       string
	Contact    string
	Source     string // where it came from (callgate's SIP socket)
	Expires    int    // asked
	Status     int    // what we answered
	Authorized bool
	CSeq       uint32
	At         time.Time
}

// VPBX plays Mango Office's VPBX toward callgate.
type VPBX struct {
	cfg    VPBXConfig
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	pc     net.PacketConn
	auth   *digest.Server
	mode   atomic.Int32
	dcc    *sipgo.DialogClientCache
	dsc    *sipgo.DialogServerCache

	mu       sync.Mutex
	bindings map[string]Registration

	// Registrations receives every REGISTER after it was answered.
	Registrations chan Registration
	// Calls receives INVITEs from callgate (calls to outside numbers).
	Calls chan *IncomingCall
	// Requests receives every other request (OPTIONS, BYE, ...).
	Requests chan *sip.Request
}

// NewVPBX starts the stand-in on UDP.
func NewVPBX(cfg VPBXConfig) (*VPBX, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Grant == 0 {
		cfg.Grant = 300
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("vpbx-standin"))
	if err != nil {
		return nil, err
	}
	v := &VPBX{cfg: cfg, ua: ua, bindings: map[string]Registration{},
		auth:          digest.NewServer(cfg.Domain, []digest.Algorithm{digest.MD5}, time.Minute),
		Registrations: make(chan Registration, 256), Calls: make(chan *IncomingCall, 16), Requests: make(chan *sip.Request, 256)}
	v.srv, _ = sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	v.pc, err = net.ListenPacket("udp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	host, port, _ := sip.ParseAddr(v.pc.LocalAddr().String())
	v.client, _ = sipgo.NewClient(ua, sipgo.WithClientHostname(host), sipgo.WithClientPort(port), sipgo.WithClientConnectionAddr(v.pc.LocalAddr().String()), sipgo.WithClientLogger(log))
	contact := sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "vpbx", Host: host, Port: port}}
	v.dcc = sipgo.NewDialogClientCache(v.client, contact)
	v.dsc = sipgo.NewDialogServerCache(v.client, contact)
	v.handlers()
	go v.srv.ServeUDP(v.pc)
	if err := waitServing(ua, "udp", v.Addr()); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

// Addr is where the stand-in listens.
func (v *VPBX) Addr() string { return v.pc.LocalAddr().String() }

// SetMode changes how REGISTERs are answered from now on.
func (v *VPBX) SetMode(m VPBXMode) { v.mode.Store(int32(m)) }

// Binding returns the current registration of an account.
func (v *VPBX) Binding(user string) (Registration, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	r, ok := v.bindings[user]
	return r, ok
}

// Close stops the stand-in.
func (v *VPBX) Close() {
	v.pc.Close()
	v.ua.Close()
}

func (v *VPBX) secretsFor() digest.Secrets {
	return realmSecrets{realm: v.cfg.Domain, accounts: v.cfg.Accounts}
}

type realmSecrets struct {
	realm    string
	accounts map[string]string
}

func (s realmSecrets) HA1(user string, alg digest.Algorithm) (string, bool) {
	p, ok := s.accounts[user]
	return digest.HA1(alg, user, s.realm, p), ok
}

func (v *VPBX) handlers() {
	v.srv.OnRegister(func(req *sip.Request, tx sip.ServerTransaction) {
		mode := VPBXMode(v.mode.Load())
		reg := Registration{User: req.To().Address.User, Source: req.Source(), CSeq: req.CSeq().SeqNo, At: time.Now()}
		if c := req.Contact(); c != nil {
			reg.Contact = c.Address.String()
		}
		if h := req.GetHeader("Expires"); h != nil {
			reg.Expires, _ = strconv.Atoi(strings.TrimSpace(h.Value()))
		}
		defer func() {
			select {
			case v.Registrations <- reg:
			default:
			}
		}()
		switch mode {
		case VPBXSilent:
			reg.Status = 0
			return
		case VPBXForbidden:
			reg.Status = 403
			_ = tx.Respond(sip.NewResponseFromRequest(req, 403, "Forbidden", nil))
			return
		}
		auth := ""
		if h := req.GetHeader("Authorization"); h != nil {
			auth = h.Value()
		}
		user, r := v.auth.Verify("REGISTER", auth, uint64(req.CSeq().SeqNo), v.secretsFor())
		switch r {
		case digest.OK:
		case digest.Failed:
			reg.Status = 403
			_ = tx.Respond(sip.NewResponseFromRequest(req, 403, "Forbidden", nil))
			return
		default:
			reg.Status = 401
			res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
			res.AppendHeader(sip.NewHeader("WWW-Authenticate", v.auth.Challenges(r == digest.Stale)[0]))
			_ = tx.Respond(res)
			return
		}
		if user != reg.User {
			reg.Status = 403
			_ = tx.Respond(sip.NewResponseFromRequest(req, 403, "Forbidden", nil))
			return
		}
		reg.Authorized, reg.Status = true, 200
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		grant := min(v.cfg.Grant, reg.Expires)
		if reg.Contact != "" && reg.Expires > 0 {
			res.AppendHeader(sip.NewHeader("Contact", "<"+reg.Contact+">;expires="+strconv.Itoa(grant)))
		}
		v.mu.Lock()
		if reg.Expires == 0 {
			delete(v.bindings, reg.User)
		} else {
			v.bindings[reg.User] = reg
		}
		v.mu.Unlock()
		_ = tx.Respond(res)
	})
	v.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		if req.To().Params.Has("tag") {
			acceptReinvite(v.dsc, v.dcc, req, tx)
			v.note(req)
			return
		}
		if v.cfg.ChallengeInvites {
			auth := ""
			if h := req.GetHeader("Proxy-Authorization"); h != nil {
				auth = h.Value()
			}
			user, r := v.auth.Verify("INVITE", auth, uint64(req.CSeq().SeqNo), v.secretsFor())
			if r != digest.OK || user != req.From().Address.User {
				res := sip.NewResponseFromRequest(req, 407, "Proxy Authentication Required", nil)
				res.AppendHeader(sip.NewHeader("Proxy-Authenticate", v.auth.Challenges(r == digest.Stale)[0]))
				_ = tx.Respond(res)
				return
			}
		}
		d, err := v.dsc.ReadInvite(req, tx)
		if err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 400, err.Error(), nil))
			return
		}
		offerCall(v.Calls, req, d, tx)
	})
	v.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = v.dsc.ReadAck(req, tx) })
	v.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := v.dsc.ReadBye(req, tx); err != nil {
			if err := v.dcc.ReadBye(req, tx); err != nil {
				_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
			}
		}
		v.note(req)
	})
	v.srv.OnRefer(func(req *sip.Request, tx sip.ServerTransaction) {
		// Recorded only: the stand-in does not carry out transfers itself.
		_ = tx.Respond(sip.NewResponseFromRequest(req, 202, "Accepted", nil))
		v.note(req)
	})
	v.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		v.note(req)
	})
}

func (v *VPBX) note(req *sip.Request) {
	select {
	case v.Requests <- req:
	default:
	}
}

// Invite calls account (as if an outside caller dialled its number) at the
// address the account registered from, and waits for the answer.
func (v *VPBX) Invite(ctx context.Context, account, caller string, sdp []byte) (*Call, error) {
	from := &sip.FromHeader{DisplayName: caller, Address: sip.Uri{Scheme: "sip", User: caller, Host: v.cfg.Domain}}
	return v.InviteAs(ctx, account, from, sdp)
}

// InviteAs is Invite with the From header given whole, and more headers:
// how calls from other carriers' numbers arrive (a login as the From user,
// the number in P-Asserted-Identity).
func (v *VPBX) InviteAs(ctx context.Context, account string, from *sip.FromHeader, sdp []byte, headers ...sip.Header) (*Call, error) {
	reg, ok := v.Binding(account)
	if !ok {
		return nil, fmt.Errorf("invite %s: not registered", account)
	}
	host, port, err := sip.ParseAddr(reg.Source)
	if err != nil {
		return nil, err
	}
	uri := sip.Uri{Scheme: "sip", User: account, Host: host, Port: port}
	f := *from
	f.Params = append(sip.NewParams(), from.Params...)
	f.Params.Add("tag", sip.GenerateTagN(10))
	from = &f
	s, err := v.dcc.Invite(ctx, uri, sdp, append([]sip.Header{from, sip.NewHeader("Content-Type", "application/sdp")}, headers...)...)
	if err != nil {
		return nil, fmt.Errorf("invite %s: %w", account, err)
	}
	if err := s.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		return nil, fmt.Errorf("invite %s: %w", account, err)
	}
	if err := s.Ack(ctx); err != nil {
		return nil, err
	}
	return &Call{client: s, Remote: s.InviteResponse.Body()}, nil
}
