// Package demo runs callgate inside a simulated office: a stand-in for the
// Mango Office VPBX, SIP phones that answer and talk with tones, RetailCRM
// and Megaplan stand-ins with a known client and her responsible manager,
// and scripted traffic (inbound, outbound, missed, transferred and
// click-to-call calls), all on loopback, so a newcomer sees every feature
// work in the console with no setup.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"callgate/configs"
	"callgate/crm/crmtest"
	"callgate/gateway"
	"callgate/gateway/calls"
	"callgate/gateway/config"
	"callgate/sip/sipnet"
	"callgate/sip/siptest"

	"golang.org/x/crypto/bcrypt"
)

// Options for Run.
type Options struct {
	HTTP string    // where the API listens
	Out  io.Writer // what happens, for people
	Log  io.Writer // callgate's own log
}

// Summary counts what happened during a demo run.
type Summary struct {
	PhoneRegistrations int // accepted REGISTERs of the phones, refreshes included
	UpstreamRegistered int // accepted REGISTERs of callgate's accounts at the VPBX
	Keepalives         int
	// Scripted calls that went as the script meant, by kind. Missed counts
	// only the call the script leaves unanswered on purpose.
	Inbound, Outbound, Missed, Transferred, ClickToCall int
	// Failed counts scripted calls that did not go as meant (an error, an
	// unexpected SIP status, an API refusal); Failures splits it by kind.
	// Calls the end of the demo interrupted are in neither, but in
	// Interrupted.
	Failed      int
	Failures    map[string]int
	Interrupted int
	// Calls in callgate's own history that have ended, how many of them
	// were answered, and the calls still going on when it was read (the
	// stop hangs them up after).
	Recorded, RecordedAnswered, InProgress     int
	Recordings                                 int
	RecordingBytes                             int64
	RetailPopups, RetailHistory, MegaplanCalls int
}

// HTTPInUseError is returned by Run when the address asked for the API
// and console is taken by another program.
type HTTPInUseError struct {
	Addr string // as asked, host:port
	Err  error
}

func (e *HTTPInUseError) Error() string {
	return "HTTP address " + e.Addr + " is in use: " + e.Err.Error()
}

func (e *HTTPInUseError) Unwrap() error { return e.Err }

// checkHTTP fails with *HTTPInUseError when addr cannot be listened on
// because another program holds it: said before anything starts, with
// the address, it is an error a newcomer can act on.
func checkHTTP(addr string) error {
	l, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return &HTTPInUseError{Addr: addr, Err: err}
	}
	if err != nil {
		return fmt.Errorf("listen http %s: %w", addr, err)
	}
	return l.Close()
}

// phoneExpires is what the simulated phones ask for, in seconds: two
// minutes, as many desk phones do; they refresh at half of what is granted.
const phoneExpires = 120

// Demo logins for the console.
var logins = []struct{ employee, password, role string }{
	{"ivanov", "demo-ivanov", "admin"},
	{"petrov", "demo-petrov", "employee"},
}

// freePort is a loopback port free now for both UDP and TCP: the SIP
// listeners take the same port on both.
func freePort() (int, error) {
	var err error
	for range 20 {
		var c net.PacketConn
		if c, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return 0, err
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		var l net.Listener
		l, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		c.Close()
		if err == nil {
			l.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free loopback port: %w", err)
}

// Config returns the demo configuration with free loopback ports and a
// fresh data directory.
func Config(httpAddr, dataDir string) (*config.Config, error) {
	cfg, err := config.Parse("configs/demo.toml", configs.Demo)
	if err != nil {
		return nil, fmt.Errorf("embedded demo config: %w", err)
	}
	sipPort, err := freePort()
	if err != nil {
		return nil, err
	}
	sipAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(sipPort))
	cfg.SIP.Listen = []config.ListenAddr{{Transport: sipnet.UDP, Addr: sipAddr}, {Transport: sipnet.TCP, Addr: sipAddr}}
	cfg.DataDir = dataDir
	cfg.Recording.Dir = dataDir + "/recordings"
	if httpAddr != "" {
		cfg.HTTP.Listen = httpAddr
	}
	if host, port, err := net.SplitHostPort(cfg.HTTP.Listen); err == nil && port == "0" {
		// Recording links and CRM callbacks need the real address.
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		cfg.HTTP.Listen = net.JoinHostPort(host, strconv.Itoa(p))
	}
	cfg.HTTP.PublicURL = "http://" + cfg.HTTP.Listen
	for i := range cfg.Employees {
		for _, l := range logins {
			if l.employee == cfg.Employees[i].ID {
				h, err := bcrypt.GenerateFromPassword([]byte(l.password), bcrypt.MinCost)
				if err != nil {
					return nil, err
				}
				cfg.Employees[i].PasswordHash, cfg.Employees[i].Role = string(h), l.role
			}
		}
	}
	return cfg, nil
}

// crms starts the CRM stand-ins with the demo's client and points the
// configuration at them.
func crms(cfg *config.Config) (*crmtest.RetailCRM, *crmtest.Megaplan) {
	rc := crmtest.NewRetailCRM("demo-retail-key-0123456789")
	rc.AddCustomer("Анна", "Смирнова", knownClient)
	rc.SetManager(knownClient, 7)
	mp := crmtest.NewMegaplan("demo@office", "demo-megaplan-pass", 0)
	mp.AddContractor("Анна Смирнова", "+"+knownClient)
	mp.SetRoute("+"+knownClient, "1000007")
	cfg.CRM.RetailCRM = config.RetailCRM{Enabled: true, URL: rc.URL, APIKey: "demo-retail-key-0123456789", Site: "demo-shop",
		ModuleCode: "callgate", TimeZone: config.ParseZone("Europe/Moscow"), RetryMax: config.Duration(10 * time.Second)}
	cfg.CRM.Megaplan = config.Megaplan{Enabled: true, URL: mp.URL, Username: "demo@office", Password: "demo-megaplan-pass",
		RPS: 20, Poll: config.Duration(10 * time.Second), RetryMax: config.Duration(10 * time.Second)}
	return rc, mp
}

// Run starts the VPBX stand-in, callgate and the phones, and narrates until
// ctx ends. It prints a summary at the end.
func Run(ctx context.Context, o Options) error {
	dataDir, err := os.MkdirTemp("", "callgate-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)
	cfg, err := Config(o.HTTP, dataDir)
	if err != nil {
		return err
	}
	if err := checkHTTP(cfg.HTTP.Listen); err != nil {
		return err
	}
	accounts := map[string]string{}
	for _, a := range cfg.Upstream.Accounts {
		accounts[a.User] = a.Password
	}
	rc, mp := crms(cfg)
	defer rc.Close()
	defer mp.Close()
	vpbx, err := siptest.NewVPBX(siptest.VPBXConfig{Domain: cfg.Upstream.Domain, Accounts: accounts, Grant: 60})
	if err != nil {
		return fmt.Errorf("start VPBX stand-in: %w", err)
	}
	defer vpbx.Close()
	if cfg.Upstream.Registrar, err = config.ParseUpstreamAddr("udp:" + vpbx.Addr()); err != nil {
		return fmt.Errorf("VPBX stand-in: %w", err)
	}

	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	g, err := gateway.New(cfg, slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		return err
	}
	gctx, stopGateway := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	stopped := false
	defer func() {
		if !stopped {
			stopGateway()
			<-done
		}
	}()

	say := func(format string, args ...any) {
		fmt.Fprintf(o.Out, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	sipAddr := cfg.SIP.Listen[0].Addr.String()
	say("callgate is up: SIP %s (udp+tcp), HTTP http://%s", sipAddr, g.HTTPAddr())
	say("  health:  curl http://%s/readyz", g.HTTPAddr())
	say("  metrics: curl -H 'Authorization: Bearer %s' http://%s/metrics", cfg.HTTP.APITokens[0], g.HTTPAddr())
	say("simulated VPBX (Mango Office stand-in) at %s, accounts %v", vpbx.Addr(), keys(accounts))
	say("CRM stand-ins: RetailCRM %s, Megaplan %s (client Анна Смирнова +%s, her manager ivanov)", rc.URL, mp.URL, knownClient)
	say("console: http://%s/", g.HTTPAddr())
	for _, l := range logins {
		say("  login %s, password %s (%s)", l.employee, l.password, l.role)
	}

	var sum Summary
	var mu sync.Mutex
	seen := map[string]bool{} // phones whose first keepalive was told
	go func() {
		for {
			select {
			case r := <-vpbx.Registrations:
				if r.Status == 200 && r.Expires > 0 {
					mu.Lock()
					sum.UpstreamRegistered++
					mu.Unlock()
					say("VPBX: account %s registered by callgate from %s (expires %ds)", r.User, r.Source, r.Expires)
				} else if r.Status == 401 {
					say("VPBX: challenged %s (digest)", r.User)
				}
			case <-ctx.Done():
				return
			}
		}
	}()

	of := &office{vpbx: vpbx, phones: map[string]*siptest.Phone{}, say: say, api: g.HTTPAddr(), token: cfg.HTTP.APITokens[0],
		tally: newTally(say), answered: map[string]chan *siptest.Call{}, reached: make(chan string, 8)}
	var phones []*siptest.Phone
	defer func() {
		for _, p := range phones {
			p.Close()
		}
	}()
	for _, e := range cfg.Employees {
		for _, ext := range e.Extensions {
			p, err := siptest.NewPhone(siptest.PhoneConfig{User: ext, Password: e.SIPPassword, Server: sipAddr, UserAgent: "demo-phone/" + ext})
			if err != nil {
				return err
			}
			phones = append(phones, p)
			of.phones[ext] = p
			go of.phone(ctx, p)
			go func(p *siptest.Phone, name string) {
				for {
					select {
					case req := <-p.Requests:
						if req.Method == "OPTIONS" {
							mu.Lock()
							sum.Keepalives++
							first := !seen[p.User()]
							seen[p.User()] = true
							mu.Unlock()
							if first {
								say("phone %s (%s): keepalive OPTIONS from callgate (every 5 s from now on)", p.User(), name)
							}
						}
					case <-ctx.Done():
						return
					}
				}
			}(p, e.Name)
		}
	}
	// Phones register for two minutes and refresh halfway, as desk phones
	// do, for as long as the demo runs.
	for _, p := range phones {
		refreshed := func(r siptest.Refresh) {
			if r.OK() {
				mu.Lock()
				sum.PhoneRegistrations++
				mu.Unlock()
				say("phone %s: registration refreshed: %s", p.User(), r)
			} else {
				say("phone %s: registration refresh failed: %s (trying again)", p.User(), r)
			}
		}
		r := p.KeepRegistered(ctx, phoneExpires, refreshed)
		if !r.OK() {
			say("phone %s: registration failed: %s (trying again)", p.User(), r)
			continue
		}
		mu.Lock()
		sum.PhoneRegistrations++
		mu.Unlock()
		say("phone %s at %s: REGISTER -> %s", p.User(), p.Addr(), r)
	}
	say("running: a call of every kind every few seconds; press Ctrl+C to stop")
	go of.clients(ctx)
	scripted := make(chan struct{})
	go func() { defer close(scripted); of.script(ctx) }()
	<-ctx.Done()
	<-scripted
	time.Sleep(500 * time.Millisecond) // last records and CRM deliveries
	mu.Lock()
	of.tally.fill(&sum)
	sum.Recorded, sum.RecordedAnswered, sum.InProgress = history(g.HTTPAddr(), cfg.HTTP.APITokens[0])
	sum.Recordings, sum.RecordingBytes = recordings(cfg.Recording.Dir)
	for _, e := range rc.Events() {
		if e.Type == "in" || e.Type == "out" {
			sum.RetailPopups++
		}
	}
	sum.RetailHistory, sum.MegaplanCalls = len(rc.Calls()), len(mp.Calls())
	mu.Unlock()
	stopGateway()
	err = <-done
	stopped = true
	mu.Lock()
	say("%s", sum)
	mu.Unlock()
	return err
}

// history counts the ended calls in callgate's history, the answered ones
// and those still in progress, from its API, a page of 500 at a time
// (newest first).
func history(addr, token string) (total, answered, inProgress int) {
	to := ""
	for page := 0; page < 1000; page++ {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/calls?limit=500"+to, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return total, answered, inProgress
		}
		var list struct{ Calls []calls.Record }
		err = json.NewDecoder(res.Body).Decode(&list)
		res.Body.Close()
		if err != nil || len(list.Calls) == 0 {
			return total, answered, inProgress
		}
		for _, c := range list.Calls {
			if c.Internal {
				continue
			}
			if c.Ended.IsZero() {
				inProgress++
				continue
			}
			total++
			if !c.Answered.IsZero() {
				answered++
			}
		}
		to = "&to=" + url.QueryEscape(list.Calls[len(list.Calls)-1].Started.Format(time.RFC3339Nano))
	}
	return total, answered, inProgress
}

// recordings counts the recording files on disk and their size.
func recordings(dir string) (int, int64) {
	n, size := 0, int64(0)
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && (strings.HasSuffix(p, ".wav") || strings.HasSuffix(p, ".opus")) {
			if info, err := e.Info(); err == nil {
				n, size = n+1, size+info.Size()
			}
		}
		return nil
	})
	return n, size
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
