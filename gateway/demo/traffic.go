package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
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
	tally  *tally

	mu       sync.Mutex
	answered map[string]chan *siptest.Call // extension -> calls it answered
	// reached gets the number of each outside call a client answered.
	reached chan string
	// busy makes every phone let calls ring (the missed call); rang counts
	// the calls phones let ring meanwhile.
	busy atomic.Bool
	rang atomic.Int32
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
			if o.busy.Load() {
				o.rang.Add(1)
				continue // let it ring
			}
			if ext == "102" {
				continue
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

// drain empties a channel of what earlier calls left in it.
func drain[T any](ch chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
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
				number := in.Request.Recipient.User
				o.say("client %s answered", number)
				select {
				case o.reached <- number:
				default:
				}
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
// then the client hangs up. The error is why the call was not answered.
func (o *office) inbound(ctx context.Context, account, from string, talk time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tone := peer(cctx, 440)
	if tone == nil {
		return fmt.Errorf("no RTP port for the caller")
	}
	c, err := o.vpbx.Invite(cctx, account, from, siptest.SDP(tone.Addr().String()))
	if err != nil {
		return err
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
	return nil
}

// script places a call of every kind, round after round, until ctx ends,
// and counts how each went.
func (o *office) script(ctx context.Context) {
	var calls sync.WaitGroup
	defer calls.Wait()
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
		err := o.inbound(ctx, "sales1", knownClient, 4*time.Second)
		o.tally.record(kindInbound, answered(ctx, err, knownClient+" → sales1 answered"))
		if !wait(time.Second) {
			return
		}

		o.say("outbound: petrov dials 8 916 765-43-21 from his phone")
		calls.Add(1)
		go func() {
			defer calls.Done()
			o.tally.record(kindOutbound, o.outbound(ctx))
		}()
		if !wait(7 * time.Second) {
			return
		}

		o.say("missed: %s calls sales2 and nobody answers", missedClient)
		o.busy.Store(true)
		o.rang.Store(0)
		err = o.inbound(ctx, "sales2", missedClient, time.Second)
		o.busy.Store(false)
		o.tally.record(kindMissed, missed(ctx, err, int(o.rang.Load())))

		o.say("transfer: %s calls sales1; ivanov answers and transfers to petrov (103)", transferredBy)
		o.tally.record(kindTransfer, o.transfer(ctx))
		if !wait(2 * time.Second) { // petrov's line frees up
			return
		}

		o.say("click-to-call: petrov calls %s back from the console", missedClient)
		start := time.Now()
		o.tally.record(kindClickToCall, o.clickToCall(ctx))
		if !wait(9*time.Second - time.Since(start)) {
			return
		}
	}
}

// outbound has petrov dial a client from his phone.
func (o *office) outbound(ctx context.Context) result {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tone := peer(cctx, 1000)
	if tone == nil {
		return result{failed, "no RTP port for petrov's phone"}
	}
	c, err := o.phones["103"].Dial(cctx, "89167654321", siptest.SDP(tone.Addr().String()))
	if err != nil {
		return answered(ctx, err, "")
	}
	o.say("petrov is talking to %s", newClient)
	<-c.Done()
	return answered(ctx, nil, "petrov's call to "+newClient+" answered")
}

// transfer has a client call sales1; ivanov answers and sends the call on
// to petrov with REFER; it went well when petrov's phone answers it.
func (o *office) transfer(ctx context.Context) result {
	drain(o.channel("101")) // calls answered earlier
	drain(o.channel("103"))
	called := make(chan error, 1)
	go func() { called <- o.inbound(ctx, "sales1", transferredBy, 9*time.Second) }()
	defer func() { <-called }()
	var c *siptest.Call
	select {
	case c = <-o.channel("101"):
	case err := <-called:
		called <- err // for the deferred wait
		if err == nil {
			err = fmt.Errorf("the call ended before ivanov answered")
		}
		return answered(ctx, err, "")
	case <-time.After(10 * time.Second):
		return answered(ctx, fmt.Errorf("ivanov's phone did not answer within 10 s"), "")
	case <-ctx.Done():
		return result{interrupted, ""}
	}
	select {
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
		return result{interrupted, ""}
	}
	code, err := c.Refer(ctx, "sip:103@callgate", "")
	if err == nil && code != 202 {
		err = fmt.Errorf("REFER answered %d, expected 202", code)
	}
	if err != nil {
		return answered(ctx, err, "")
	}
	o.say("ivanov transferred the call to petrov (REFER → %d)", code)
	select {
	case <-o.channel("103"):
		return answered(ctx, nil, transferredBy+" → sales1 → ivanov → petrov")
	case <-time.After(8 * time.Second):
		return answered(ctx, fmt.Errorf("petrov's phone did not answer the transferred call within 8 s"), "")
	case <-ctx.Done():
		return result{interrupted, ""}
	}
}

// clickToCall asks callgate's API to connect petrov with a client; it went
// well when the client answered callgate's call.
func (o *office) clickToCall(ctx context.Context) result {
	drain(o.reached)
	body, _ := json.Marshal(map[string]string{"employee": "petrov", "number": "8" + missedClient[1:]})
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+o.api+"/api/v1/calls", bytes.NewReader(body))
	if err != nil {
		return result{failed, err.Error()}
	}
	req.Header.Set("Authorization", "Bearer "+o.token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return answered(ctx, err, "")
	}
	msg, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
	res.Body.Close()
	o.say("click-to-call: API answered %d", res.StatusCode)
	if res.StatusCode != http.StatusCreated {
		return answered(ctx, fmt.Errorf("API answered %d: %s", res.StatusCode, bytes.TrimSpace(msg)), "")
	}
	deadline := time.After(15 * time.Second)
	for {
		select {
		case n := <-o.reached:
			if strings.HasSuffix(n, missedClient[1:]) {
				return answered(ctx, nil, "petrov connected with "+missedClient)
			}
		case <-deadline:
			return answered(ctx, fmt.Errorf("the client was not reached within 15 s"), "")
		case <-ctx.Done():
			return result{interrupted, ""}
		}
	}
}
