// Package demo runs callgate inside a simulated office: a stand-in for the
// Mango Office VPBX and SIP phones that register, all on loopback, so a
// newcomer sees the product work with no setup.
package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"callgate/configs"
	"callgate/gateway"
	"callgate/gateway/config"
	"callgate/sip/siptest"
)

// Options for Run.
type Options struct {
	HTTP string    // where the API listens
	Out  io.Writer // what happens, for people
	Log  io.Writer // callgate's own log
}

// Summary counts what happened during a demo run.
type Summary struct {
	PhoneRegistrations int
	UpstreamRegistered int
	Keepalives         int
}

func freePort(network string) (int, error) {
	if network == "tcp" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// Config returns the demo configuration with free loopback ports and a
// fresh data directory.
func Config(httpAddr, dataDir string) (*config.Config, error) {
	cfg, err := config.Parse("configs/demo.toml", configs.Demo)
	if err != nil {
		return nil, fmt.Errorf("embedded demo config: %w", err)
	}
	sipPort, err := freePort("udp")
	if err != nil {
		return nil, err
	}
	cfg.SIP.Listen = []string{fmt.Sprintf("udp:127.0.0.1:%d", sipPort), fmt.Sprintf("tcp:127.0.0.1:%d", sipPort)}
	cfg.DataDir = dataDir
	cfg.Recording.Dir = dataDir + "/recordings"
	if httpAddr != "" {
		cfg.HTTP.Listen = httpAddr
	}
	return cfg, nil
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
	accounts := map[string]string{}
	for _, a := range cfg.Upstream.Accounts {
		accounts[a.User] = a.Password
	}
	vpbx, err := siptest.NewVPBX(siptest.VPBXConfig{Domain: cfg.Upstream.Domain, Accounts: accounts, Grant: 60})
	if err != nil {
		return fmt.Errorf("start VPBX stand-in: %w", err)
	}
	defer vpbx.Close()
	cfg.Upstream.Registrar = "udp:" + vpbx.Addr()

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
	sipAddr := cfg.SIP.Listen[0][len("udp:"):]
	say("callgate is up: SIP %s (udp+tcp), HTTP http://%s", sipAddr, g.HTTPAddr())
	say("  health:  curl http://%s/readyz", g.HTTPAddr())
	say("  metrics: curl -H 'Authorization: Bearer %s' http://%s/metrics", cfg.HTTP.APITokens[0], g.HTTPAddr())
	say("simulated VPBX (Mango Office stand-in) at %s, accounts %v", vpbx.Addr(), keys(accounts))

	var sum Summary
	var mu sync.Mutex
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
			go func(p *siptest.Phone, name string) {
				for {
					select {
					case req := <-p.Requests:
						if req.Method == "OPTIONS" {
							mu.Lock()
							sum.Keepalives++
							mu.Unlock()
							say("phone %s (%s): keepalive OPTIONS from callgate", p.User(), name)
						}
					case <-ctx.Done():
						return
					}
				}
			}(p, e.Name)
		}
	}
	for _, p := range phones {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := p.Register(rctx, 120)
		cancel()
		if err != nil {
			say("phone %s: registration failed: %v", p.User(), err)
			continue
		}
		if res.StatusCode == 200 {
			mu.Lock()
			sum.PhoneRegistrations++
			mu.Unlock()
		}
		say("phone %s at %s: REGISTER -> %d %s", p.User(), p.Addr(), res.StatusCode, res.Reason)
	}
	say("running; press Ctrl+C to stop")
	<-ctx.Done()
	stopGateway()
	err = <-done
	stopped = true
	mu.Lock()
	say("summary: %d phone registrations, %d upstream registrations, %d keepalives answered by phones",
		sum.PhoneRegistrations, sum.UpstreamRegistered, sum.Keepalives)
	mu.Unlock()
	return err
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
