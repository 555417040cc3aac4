package b2bua

import (
	"errors"
	"fmt"
)

// Refusal is a router's refusal of a call or a transfer by policy (a dial
// rule): the phone gets Status with Reason, which phones show on their
// screen, and nothing is sent upstream.
type Refusal struct {
	Status int
	Reason string
	// Rule names the policy that refused (for the API and metrics).
	Rule string
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("refused by %s: %d %s", r.Rule, r.Status, r.Reason)
}

// refusal returns the Refusal in a router's error, if it is one.
func refusal(err error) (*Refusal, bool) {
	var r *Refusal
	return r, errors.As(err, &r)
}

// Lease is what a router holds while a call it routed to an outside number
// lasts (e.g. a place under a limit of concurrent calls). The B2BUA calls
// Answered when the outside party answers and End when the call ends or is
// never placed; End may come more than once and must be idempotent.
type Lease interface {
	Answered()
	End()
}

func endLease(l Lease) {
	if l != nil {
		l.End()
	}
}

// hold keeps l until the call ends (at once if it already has).
func (c *call) hold(l Lease) {
	if l == nil {
		return
	}
	if c.ended {
		l.End()
		return
	}
	c.leases = append(c.leases, l)
}

// settle keeps l for the rest of the call if its leg was answered, and
// ends it otherwise.
func (c *call) settle(l Lease, answered bool) {
	if l == nil {
		return
	}
	if answered {
		l.Answered()
	}
	if answered && !c.ended {
		c.leases = append(c.leases, l)
		return
	}
	l.End()
}

func (c *call) endLeases() {
	for _, l := range c.leases {
		l.End()
	}
	c.leases = nil
}
