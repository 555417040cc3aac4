package siptest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Refresh is the outcome of one REGISTER sent by KeepRegistered.
type Refresh struct {
	// Response is the final response; nil when Err is set.
	Response *sip.Response
	// Granted is how long the registrar keeps the binding (from our
	// Contact's expires parameter, else the Expires header, else what we
	// asked); zero unless the response was a 2xx.
	Granted time.Duration
	// Err is set when no final response came (timeout, closed socket).
	Err error
}

// OK reports whether the registration was accepted.
func (r Refresh) OK() bool { return r.Err == nil && r.Response != nil && r.Response.IsSuccess() }

// String is the outcome for people: "200 OK (expires 120 s)" or the error.
func (r Refresh) String() string {
	switch {
	case r.Err != nil:
		return r.Err.Error()
	case r.OK():
		return fmt.Sprintf("%d %s (expires %.0f s)", r.Response.StatusCode, r.Response.Reason, r.Granted.Seconds())
	default:
		return fmt.Sprintf("%d %s", r.Response.StatusCode, r.Response.Reason)
	}
}

// Timing of KeepRegistered: one attempt may take attemptTimeout; a failed
// one is retried after retryMin, doubling up to retryMax, and never later
// than the binding it would replace runs out.
const (
	attemptTimeout = 5 * time.Second
	retryMin       = 2 * time.Second
	retryMax       = 30 * time.Second
	refreshFloor   = 500 * time.Millisecond
)

// KeepRegistered registers the phone for expires seconds and goes on
// registering it, as a real phone does, until ctx ends or the phone is
// closed: again once half of what the registrar granted has passed, so a
// lost or slow refresh still leaves time to retry before the binding
// expires. It returns the first attempt's outcome once it is known; every
// later attempt goes to each (if not nil), from the background goroutine.
// A failed first attempt is retried in the background too.
func (p *Phone) KeepRegistered(ctx context.Context, expires int, each func(Refresh)) Refresh {
	first := p.registerOnce(ctx, expires)
	go p.keepRegistered(ctx, expires, first, each)
	return first
}

func (p *Phone) keepRegistered(ctx context.Context, expires int, last Refresh, each func(Refresh)) {
	retry := retryMin
	expiry := time.Time{} // of the binding we hold, if any
	for {
		var wait time.Duration
		if last.OK() {
			expiry = time.Now().Add(last.Granted)
			wait = max(last.Granted/2, refreshFloor)
			retry = retryMin
		} else {
			wait = retry
			if left := time.Until(expiry) / 2; !expiry.IsZero() && left > 0 {
				wait = min(wait, max(left, refreshFloor))
			}
			retry = min(retry*2, retryMax)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-p.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		last = p.registerOnce(ctx, expires)
		if ctx.Err() != nil || p.ctx.Err() != nil {
			return // stopped while sending: the outcome says nothing
		}
		if each != nil {
			each(last)
		}
	}
}

// registerOnce sends one REGISTER (answering a challenge) bounded by
// attemptTimeout.
func (p *Phone) registerOnce(ctx context.Context, expires int) Refresh {
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	res, err := p.Register(actx, expires)
	if err != nil {
		return Refresh{Err: err}
	}
	r := Refresh{Response: res}
	if res.IsSuccess() {
		r.Granted = p.granted(res, time.Duration(expires)*time.Second)
	}
	return r
}

// granted reads the interval the registrar gave our Contact: a 200 lists
// every binding of the AOR, each with its expires parameter (RFC 3261
// §10.3 step 8); without ours, the Expires header; else what we asked.
func (p *Phone) granted(res *sip.Response, asked time.Duration) time.Duration {
	ours := p.contact.Address
	for _, h := range res.GetHeaders("Contact") {
		var uri sip.Uri
		params := sip.NewParams()
		if ch, ok := h.(*sip.ContactHeader); ok {
			uri, params = ch.Address, ch.Params
		} else if _, err := sip.ParseAddressValue(h.Value(), &uri, &params); err != nil {
			continue
		}
		if uri.User != ours.User || !strings.EqualFold(uri.Host, ours.Host) || uri.Port != ours.Port {
			continue
		}
		if v, ok := params.Get("expires"); ok {
			if d, ok := seconds(v); ok {
				return d
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if d, ok := seconds(h.Value()); ok {
			return d
		}
	}
	return asked
}

// seconds reads a positive delta-seconds value; RFC 3261 §20.19 caps it at
// 2^32-1, which also keeps the Duration from overflowing.
func seconds(v string) (time.Duration, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
	if err != nil || n == 0 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}
