package demo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// sipError is how sipgo reports a final error status to an INVITE.
func sipError(code int, reason string) error {
	return fmt.Errorf("invite sales1: %w", &sipgo.ErrDialogResponse{Res: sip.NewResponse(code, reason)})
}

// Each scripted call is judged against what the script meant: only the
// call left to ring on purpose, that rang and got 480, is missed; a 480
// that rang nobody (no phone registered), a 409 from the API or any error
// is a failure; a call cut by the end of the demo is not counted.
func TestOutcomes(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		got  result
		want outcome
		says string
	}{
		{"answered", answered(live, nil, "79161234567 → sales1 answered"), succeeded, "sales1 answered"},
		{"no phone registered", answered(live, sipError(480, "Temporarily Unavailable"), "x"), failed, "SIP 480 Temporarily Unavailable"},
		{"busy", answered(live, sipError(486, "Busy Here"), "x"), failed, "SIP 486"},
		{"API refusal", answered(live, errors.New("API answered 409: no free line"), "x"), failed, "409"},
		{"network error", answered(live, errors.New("connection refused"), "x"), failed, "connection refused"},
		{"cut by the end of the demo", answered(ended, sipError(487, "Request Terminated"), "x"), interrupted, ""},
		{"missed as scripted", missed(live, sipError(480, "Temporarily Unavailable"), 1), succeeded, "rang 1 phone(s), nobody answered"},
		{"missed but no phone rang", missed(live, sipError(480, "Temporarily Unavailable"), 0), failed, "no phone rang: SIP 480"},
		{"missed with another status", missed(live, sipError(500, "Server Internal Error"), 2), failed, "SIP 500"},
		{"missed but answered", missed(live, nil, 1), failed, "answered"},
		{"missed, no answer at all", missed(live, errors.New("context deadline exceeded"), 1), failed, "deadline"},
		{"missed call cut by the end", missed(ended, sipError(487, "Request Terminated"), 0), interrupted, ""},
	} {
		if tc.got.outcome != tc.want {
			t.Errorf("%s: outcome %d, want %d (%q)", tc.name, tc.got.outcome, tc.want, tc.got.detail)
		}
		if !strings.Contains(tc.got.detail, tc.says) {
			t.Errorf("%s: detail %q lacks %q", tc.name, tc.got.detail, tc.says)
		}
	}
}

// The summary counts failures as failures, by kind, never as missed
// calls, and interrupted ones apart; each call is told as it ends with OK
// or FAILED.
func TestSummaryCountsFailures(t *testing.T) {
	var lines []string
	ty := newTally(func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) })
	live := context.Background()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	ty.record(kindInbound, answered(live, nil, "answered"))
	ty.record(kindInbound, answered(live, sipError(480, "Temporarily Unavailable"), ""))
	ty.record(kindMissed, missed(live, sipError(480, "Temporarily Unavailable"), 1))
	ty.record(kindMissed, missed(live, sipError(480, "Temporarily Unavailable"), 0))
	ty.record(kindClickToCall, answered(live, errors.New("API answered 409: busy"), ""))
	ty.record(kindClickToCall, answered(live, errors.New("API answered 409: busy"), ""))
	ty.record(kindTransfer, answered(live, nil, "transferred"))
	ty.record(kindOutbound, answered(ended, errors.New("cut"), ""))
	var s Summary
	ty.fill(&s)
	if s.Inbound != 1 || s.Missed != 1 || s.Transferred != 1 || s.Outbound != 0 || s.ClickToCall != 0 || s.Failed != 4 || s.Interrupted != 1 {
		t.Fatalf("summary %+v", s)
	}
	want := map[string]int{kindInbound: 1, kindMissed: 1, kindClickToCall: 2}
	if fmt.Sprint(s.Failures) != fmt.Sprint(want) {
		t.Errorf("failures by kind %v, want %v", s.Failures, want)
	}
	line := s.String()
	if !strings.Contains(line, "1 inbound answered, 0 outbound, 1 missed, 1 transferred, 0 click-to-call, 4 failed (1 inbound, 1 missed, 2 click-to-call), 1 cut short by the stop;") {
		t.Errorf("summary line: %s", line)
	}
	var ok, bad int
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "OK "):
			ok++
		case strings.HasPrefix(l, "FAILED "):
			bad++
		default:
			t.Errorf("unexpected line %q", l)
		}
	}
	if ok != 3 || bad != 4 {
		t.Errorf("told %d OK and %d FAILED, want 3 and 4:\n%s", ok, bad, strings.Join(lines, "\n"))
	}
	if s := (Summary{Inbound: 2}).String(); !strings.Contains(s, ", 0 failed, 0 cut short by the stop;") {
		t.Errorf("a run without failures: %s", s)
	}
}
