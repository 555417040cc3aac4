package crmlink

import (
	"context"
	"errors"
	"time"

	"callgate/crm"
	"callgate/gateway/routing"
)

// lookupTTL is how long an answer about a number is reused: long enough
// for the call's record and every console showing its card to share one
// round of CRM requests, short enough that a client added in the CRM
// shows on the next call.
const lookupTTL = 10 * time.Second

// lookupTimeout bounds one round of CRM requests, whoever waits for it.
const lookupTimeout = 5 * time.Second

// lookup is one round of asking the CRMs about a number.
type lookup struct {
	done chan struct{}
	c    *crm.Client
	err  error
	at   time.Time // when it finished
}

// Client finds who a number is in the CRMs. Callers asking about the same
// number at the same time, or within lookupTTL of an answer, share one
// round of requests; each waits only as long as its own ctx allows.
func (l *Link) Client(ctx context.Context, phone string) (*crm.Client, error) {
	if n, err := routing.Normalize(phone, l.region); err == nil {
		phone = n
	}
	now := time.Now()
	l.lookupMu.Lock()
	if l.lookups == nil {
		l.lookups = map[string]*lookup{}
	}
	for p, lk := range l.lookups { // few numbers ring at once: a sweep is cheap
		if !lk.at.IsZero() && now.Sub(lk.at) > lookupTTL {
			delete(l.lookups, p)
		}
	}
	lk := l.lookups[phone]
	if lk == nil {
		lk = &lookup{done: make(chan struct{})}
		l.lookups[phone] = lk
		go func() {
			// Not the caller's context: others may join and wait longer.
			actx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
			defer cancel()
			c, err := l.ask(actx, phone)
			l.lookupMu.Lock()
			lk.c, lk.err, lk.at = c, err, time.Now()
			if err != nil {
				delete(l.lookups, phone) // a failure is not reused
			}
			l.lookupMu.Unlock()
			close(lk.done)
		}()
	}
	l.lookupMu.Unlock()
	select {
	case <-lk.done:
		return lk.c, lk.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ask asks every CRM that can look callers up, at once; the first in
// configuration order that knows the number answers.
func (l *Link) ask(ctx context.Context, phone string) (*crm.Client, error) {
	type answer struct {
		c   *crm.Client
		err error
	}
	var chans []chan answer
	for _, c := range l.crms {
		f, ok := c.conn.(crm.ClientFinder)
		if !ok {
			continue
		}
		ch := make(chan answer, 1)
		chans = append(chans, ch)
		go func() {
			c, err := f.Client(ctx, phone)
			ch <- answer{c, err}
		}()
	}
	var errs []error
	for _, ch := range chans {
		a := <-ch
		if a.c != nil {
			return a.c, nil
		}
		if a.err != nil {
			errs = append(errs, a.err)
		}
	}
	if len(chans) > 0 && len(errs) == len(chans) {
		return nil, errors.Join(errs...)
	}
	return nil, nil
}
