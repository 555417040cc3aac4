package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"callgate/media/rtptest"
	"callgate/sip/siptest"
)

// Numbers the scripted clients call from.
const (
	knownClient   = "79161234567" // Анна Смирнова, ivanov's client in both CRMs
	newClient     = "79167654321"
	missedClient  = "79165550000"
	transferredBy = "79162223344"
)

// office plays the people: phones that answer with a tone (line 102 is
// left to ring, so ivanov's first line takes his calls), clients at the
// VPBX who answer callgate's calls, and the script of calls.
type office struct {
	vpbx   *siptest.VPBX
	phones map[string]*siptest.Phone
	say    func(string, ...any)
	api    string // callgate's HTTP address
	token  string

	mu       sync.Mutex
	answered map[string]chan *siptest.Call // extension -> calls it answered
	// busy makes every phone let calls ring (the missed call).
	busy atomic.Bool
}

// peer opens a tone source for one side of a call; it ends with ctx.
func peer(ctx context.Context, freq float64) *rtptest.Peer {
	p, err := rtptest.NewPeer(freq, 8)
	if err != nil {
		return nil
	}
	go func() { <-ctx.Done(); p.Close() }()
	return p
}

// phone answers its calls after a second and a half with a 1000 Hz tone,
// except while the script wants a call missed.
func (o *office) phone(ctx context.Context, p *siptest.Phone) {
	ext := p.User()
	for {
		select {
		case <-ctx.Done():
			return
		case in := <-p.Calls:
			if ext == "102" || o.busy.Load() {
				continue // let it ring
			}
			go func() {
				select {
				case <-time.After(1500 * time.Millisecond):
				case <-in.Gone():
					return
				}
				cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				tone := peer(cctx, 1000)
				if tone == nil {
					cancel()
					return
				}
				c, err := in.Answer(cctx, siptest.SDP(tone.Addr().String()))
				if err != nil {
					cancel()
					return
				}
				if a, err := siptest.MediaAddr(in.Request.Body()); err == nil {
					tone.SendTo(a)
				}
				o.say("phone %s answered a call from %s", ext, in.From())
				select {
				case o.channel(ext) <- c:
				default:
				}
				go func() { <-c.Done(); cancel() }()
			}()
		}
	}
}

func (o *office) channel(ext string) chan *siptest.Call {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.answered[ext] == nil {
		o.answered[ext] = make(chan *siptest.Call, 4)
	}
	return o.answered[ext]
}

// clients answer the calls callgate places to the VPBX after a second,
// with a 440 Hz tone, and hang up after a few seconds.
func (o *office) clients(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case in := <-o.vpbx.Calls:
			go func() {
				time.Sleep(time.Second)
				cctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				tone := peer(cctx, 440)
				if tone == nil {
					return
				}
				c, err := in.Answer(cctx, siptest.SDP(tone.Addr().String()))
				if err != nil {
					return
				}
				if a, err := siptest.MediaAddr(in.Request.Body()); err == nil {
					tone.SendTo(a)
				}
				o.say("client %s answered", in.Request.Recipient.User)
				select {
				case <-time.After(4 * time.Second):
					_ = c.Hangup(cctx)
				case <-c.Done():
				}
			}()
		}
	}
}

// inbound has a client call an account; once answered they talk for talk,
// then the client hangs up.
func (o *office) inbound(ctx context.Context, account, from string, talk time.Duration) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tone := peer(cctx, 440)
	if tone == nil {
		return
	}
	c, err := o.vpbx.Invite(cctx, account, from, siptest.SDP(tone.Addr().String()))
	if err != nil {
		o.say("client %s calling %s: not answered (%v)", from, account, err)
		return
	}
	if a, err := siptest.MediaAddr(c.Remote); err == nil {
		tone.SendTo(a)
	}
	select {
	case <-time.After(talk):
		_ = c.Hangup(cctx)
		o.say("client %s hung up", from)
	case <-c.Done():
	case <-ctx.Done():
	}
}

// script places a call of every kind, round after round, until ctx ends.
func (o *office) script(ctx context.Context) {
	wait := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-ctx.Done():
			return false
		}
	}
	for round := 1; wait(2 * time.Second); round++ {
		o.say("— round %d —", round)

		o.say("inbound: %s (Анна Смирнова, ivanov's client) calls sales1", knownClient)
		o.inbound(ctx, "sales1", knownClient, 4*time.Second)
		if !wait(time.Second) {
			return
		}

		o.say("outbound: petrov dials 8 916 765-43-21 from his phone")
		go func() {
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			tone := peer(cctx, 1000)
			if tone == nil {
				return
			}
			c, err := o.phones["103"].Dial(cctx, "89167654321", siptest.SDP(tone.Addr().String()))
			if err != nil {
				o.say("petrov's call failed: %v", err)
				return
			}
			<-c.Done()
		}()
		if !wait(7 * time.Second) {
			return
		}

		o.say("missed: %s calls sales2 and nobody answers", missedClient)
		o.busy.Store(true)
		o.inbound(ctx, "sales2", missedClient, time.Second)
		o.busy.Store(false)

		o.say("transfer: %s calls sales1; ivanov answers and transfers to petrov (103)", transferredBy)
		for drained := false; !drained; {
			select {
			case <-o.channel("101"): // calls answered earlier
			default:
				drained = true
			}
		}
		done := make(chan struct{})
		go func() { defer close(done); o.inbound(ctx, "sales1", transferredBy, 9*time.Second) }()
		select {
		case c := <-o.channel("101"):
			wait(2 * time.Second)
			if code, err := c.Refer(ctx, "sip:103@callgate", ""); err != nil || code != 202 {
				o.say("REFER failed: %d %v", code, err)
			} else {
				o.say("ivanov transferred the call to petrov (REFER → %d)", code)
			}
		case <-time.After(10 * time.Second):
		case <-ctx.Done():
			return
		}
		<-done
		if !wait(2 * time.Second) { // petrov's line frees up
			return
		}

		o.say("click-to-call: petrov calls %s back from the console", missedClient)
		body, _ := json.Marshal(map[string]string{"employee": "petrov", "number": "8" + missedClient[1:]})
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+o.api+"/api/v1/calls", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+o.token)
		req.Header.Set("Content-Type", "application/json")
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
			o.say("click-to-call: API answered %d", res.StatusCode)
		}
		if !wait(9 * time.Second) {
			return
		}
	}
}

// String is the summary line of a run.
func (s Summary) String() string {
	return fmt.Sprintf("summary: calls: %d inbound answered, %d outbound, %d missed, %d transferred, %d click-to-call; "+
		"%d recordings on disk (%d KiB); RetailCRM got %d popups and %d history entries; Megaplan got %d calls; "+
		"%d phone registrations, %d upstream registrations, %d keepalives answered by phones",
		s.Inbound, s.Outbound, s.Missed, s.Transferred, s.ClickToCall, s.Recordings, s.RecordingBytes/1024,
		s.RetailPopups, s.RetailHistory, s.MegaplanCalls, s.PhoneRegistrations, s.UpstreamRegistered, s.Keepalives)
}
