package demo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/emiago/sipgo"
)

// Kinds of scripted call, as the summary names them.
const (
	kindInbound     = "inbound"
	kindOutbound    = "outbound"
	kindMissed      = "missed"
	kindTransfer    = "transfer"
	kindClickToCall = "click-to-call"
)

// outcome is how a scripted call went, judged against what the script
// meant it to do.
type outcome int

const (
	// interrupted: the demo ended during the call; it is not counted.
	interrupted outcome = iota
	// succeeded: the call went as scripted (for the missed call: phones
	// rang and nobody answered).
	succeeded
	// failed: anything else: an error, an unexpected SIP status, a call
	// that never rang, an API refusal.
	failed
)

// result is an outcome with what people are told about it.
type result struct {
	outcome outcome
	detail  string
}

// tally counts the scripted calls by kind and outcome and tells people
// about each one as it ends.
type tally struct {
	say func(string, ...any)

	mu     sync.Mutex
	ok     map[string]int
	failed map[string]int
	cut    int // interrupted by the end of the demo
}

func newTally(say func(string, ...any)) *tally {
	return &tally{say: say, ok: map[string]int{}, failed: map[string]int{}}
}

// record counts one call. The lines start with "OK" or "FAILED" and the
// kind, so a failing demo is plain to see while it runs.
func (t *tally) record(kind string, r result) {
	t.mu.Lock()
	switch r.outcome {
	case succeeded:
		t.ok[kind]++
	case failed:
		t.failed[kind]++
	case interrupted:
		t.cut++
	}
	t.mu.Unlock()
	switch r.outcome {
	case succeeded:
		t.say("OK %s: %s", kind, r.detail)
	case failed:
		t.say("FAILED %s: %s", kind, r.detail)
	}
}

// fill copies the counts into the summary.
func (t *tally) fill(s *Summary) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.Inbound, s.Outbound, s.Missed = t.ok[kindInbound], t.ok[kindOutbound], t.ok[kindMissed]
	s.Transferred, s.ClickToCall = t.ok[kindTransfer], t.ok[kindClickToCall]
	s.Interrupted = t.cut
	s.Failed, s.Failures = 0, map[string]int{}
	for k, n := range t.failed {
		s.Failed += n
		s.Failures[k] = n
	}
}

// answered judges a call the script wants answered: err is what placing
// it returned.
func answered(ctx context.Context, err error, ok string) result {
	switch {
	case ctx.Err() != nil:
		return result{interrupted, ""}
	case err != nil:
		return result{failed, describe(err)}
	}
	return result{succeeded, ok}
}

// missed judges the call the script leaves unanswered on purpose: phones
// must have rung (rang of them) and callgate must have told the caller
// nobody answered (480 after the ring timeout). A call refused at once,
// because no phone was registered for instance, also ends in 480 but
// rings no phone: that is a failure, not a missed call.
func missed(ctx context.Context, err error, rang int) result {
	switch {
	case ctx.Err() != nil:
		return result{interrupted, ""}
	case err == nil:
		return result{failed, "answered, though every phone was told to let it ring"}
	case rang == 0:
		return result{failed, "no phone rang: " + describe(err)}
	case sipStatus(err) != 480:
		return result{failed, fmt.Sprintf("rang %d phone(s), then %s (expected 480)", rang, describe(err))}
	}
	return result{succeeded, fmt.Sprintf("rang %d phone(s), nobody answered (%s)", rang, describe(err))}
}

// sipStatus is the final status of a failed INVITE, or 0.
func sipStatus(err error) int {
	var p *sipgo.ErrDialogResponse
	if errors.As(err, &p) && p.Res != nil {
		return p.Res.StatusCode
	}
	var v sipgo.ErrDialogResponse
	if errors.As(err, &v) && v.Res != nil {
		return v.Res.StatusCode
	}
	return 0
}

// describe says what went wrong: the SIP status when there is one.
func describe(err error) string {
	var p *sipgo.ErrDialogResponse
	if errors.As(err, &p) && p.Res != nil {
		return fmt.Sprintf("SIP %d %s", p.Res.StatusCode, p.Res.Reason)
	}
	var v sipgo.ErrDialogResponse
	if errors.As(err, &v) && v.Res != nil {
		return fmt.Sprintf("SIP %d %s", v.Res.StatusCode, v.Res.Reason)
	}
	return err.Error()
}

// String is the summary line of a run.
func (s Summary) String() string {
	failures := ""
	if s.Failed > 0 {
		var parts []string
		for k, n := range s.Failures {
			parts = append(parts, fmt.Sprintf("%d %s", n, k))
		}
		sort.Strings(parts)
		failures = " (" + strings.Join(parts, ", ") + ")"
	}
	return fmt.Sprintf("summary: calls: %d inbound answered, %d outbound, %d missed, %d transferred, %d click-to-call, %d failed%s, %d cut short by the stop; "+
		"callgate's history has %d calls, %d answered, %d still in progress; "+
		"%d recordings on disk (%d KiB); RetailCRM got %d popups and %d history entries; Megaplan got %d calls; "+
		"%d phone registrations, %d upstream registrations, %d keepalives answered by phones",
		s.Inbound, s.Outbound, s.Missed, s.Transferred, s.ClickToCall, s.Failed, failures, s.Interrupted,
		s.Recorded, s.RecordedAnswered, s.InProgress, s.Recordings, s.RecordingBytes/1024,
		s.RetailPopups, s.RetailHistory, s.MegaplanCalls, s.PhoneRegistrations, s.UpstreamRegistered, s.Keepalives)
}
