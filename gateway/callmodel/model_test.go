package callmodel

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"callgate/gateway/calls"
	"callgate/gateway/config"
	"callgate/gateway/recordings"
	"callgate/gateway/store"
	"callgate/media/relay"
	"callgate/sip/b2bua"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeMedia is a call's media session as the B2BUA hands it over: it keeps
// the taps installed and answers fixed statistics.
type fakeMedia struct {
	mu    sync.Mutex
	taps  []bool // true: a tap installed, false: removed
	stats [2]relay.Stats
}

func (m *fakeMedia) SetTap(t relay.Tap) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.taps = append(m.taps, t != nil)
}

func (m *fakeMedia) Stats(side relay.Side) relay.Stats { return m.stats[side] }

func (m *fakeMedia) tapHistory() []bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]bool(nil), m.taps...)
}

// model is a model over a fresh store, recording into a temporary folder
// when rec is set, with its events.
func model(t *testing.T, rec, recordInternal bool) (*Model, <-chan calls.Event) {
	t.Helper()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: calls.NewStore(db), Region: "RU", RecordInternal: recordInternal,
		Accounts: []config.Account{
			{User: "sales1", Number: "84951234567", Source: "yandex"},
			{User: "support", Number: "+74950000000"},
		}}
	if rec {
		cfg.Recordings = recordings.New(recordings.Config{Enabled: true, Dir: filepath.Join(t.TempDir(), "recordings")})
	}
	m := New(cfg)
	events, _ := m.Bus().Subscribe(64)
	t.Cleanup(func() {
		m.Close()
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return m, events
}

var (
	start    = time.Date(2025, 3, 14, 10, 0, 0, 0, time.UTC)
	ivanov   = b2bua.Target{Extension: "101", Employee: "ivanov"}
	ivanov2  = b2bua.Target{Extension: "102", Employee: "ivanov"}
	petrov   = b2bua.Target{Extension: "103", Employee: "petrov"}
	outside  = b2bua.Target{Extension: "79169999999"} // a number through the VPBX
	inbound  = b2bua.Event{CallID: "c1", Direction: b2bua.Inbound, Account: "sales1", Outside: "79161234567", Caller: "79161234567"}
	internal = b2bua.Event{CallID: "c2", Direction: b2bua.Internal, Caller: "101", Outside: "103"}
)

// at is an event of call c, s seconds after the start.
func at(c b2bua.Event, s float64, kind b2bua.EventKind, set func(*b2bua.Event)) b2bua.Event {
	c.Kind = kind
	c.At = start.Add(time.Duration(s * float64(time.Second)))
	if set != nil {
		set(&c)
	}
	return c
}

// The record the model builds from a call's events: who was rung, the
// legs, transfers, waits, talk times and the result.
func TestRecordBuilding(t *testing.T) {
	rung := func(targets ...b2bua.Target) func(*b2bua.Event) {
		return func(e *b2bua.Event) { e.Rung = targets }
	}
	answered := func(by b2bua.Target, targets ...b2bua.Target) func(*b2bua.Event) {
		return func(e *b2bua.Event) { e.Rung, e.Answered = targets, by }
	}
	ended := func(result, by string, targets ...b2bua.Target) func(*b2bua.Event) {
		return func(e *b2bua.Event) { e.Rung, e.Result, e.HangupBy = targets, result, by }
	}
	transferred := func(from, to b2bua.Target, mode string, targets ...b2bua.Target) func(*b2bua.Event) {
		return func(e *b2bua.Event) { e.Rung, e.TransferFrom, e.Answered, e.TransferMode = targets, from, to, mode }
	}
	type leg struct {
		employee, extension, from string
		talk                      float64
	}
	for _, tc := range []struct {
		name      string
		events    []b2bua.Event
		result    string
		rung      string // employees, comma-separated
		by        string // answered by
		wait      float64
		talk      float64
		legs      []leg
		transfers string // from>to/mode, comma-separated
	}{
		{name: "answered on the second line", events: []b2bua.Event{
			at(inbound, 0, b2bua.EventRinging, rung(ivanov, ivanov2)),
			at(inbound, 4, b2bua.EventAnswered, answered(ivanov2, ivanov, ivanov2)),
			at(inbound, 64, b2bua.EventEnded, ended(b2bua.ResultAnswered, "outside", ivanov, ivanov2)),
		}, result: "answered", rung: "ivanov", by: "ivanov", wait: 4, talk: 60, legs: []leg{{"ivanov", "102", "", 60}}},
		{name: "missed", events: []b2bua.Event{
			at(inbound, 0, b2bua.EventRinging, rung(ivanov, petrov)),
			at(inbound, 30, b2bua.EventEnded, ended(b2bua.ResultNoAnswer, "timeout", ivanov, petrov)),
		}, result: "no-answer", rung: "ivanov,petrov", wait: 30},
		{name: "blind transfer to an employee", events: []b2bua.Event{
			at(inbound, 0, b2bua.EventRinging, rung(ivanov)),
			at(inbound, 2, b2bua.EventAnswered, answered(ivanov, ivanov)),
			at(inbound, 12, b2bua.EventTransferred, transferred(ivanov, petrov, "blind", ivanov, petrov)),
			at(inbound, 42, b2bua.EventEnded, ended(b2bua.ResultAnswered, "employee", ivanov, petrov)),
		}, result: "answered", rung: "ivanov,petrov", by: "ivanov", wait: 2, talk: 40,
			legs: []leg{{"ivanov", "101", "", 10}, {"petrov", "103", "ivanov", 30}}, transfers: "ivanov>petrov/blind"},
		{name: "two transfers, the second attended", events: []b2bua.Event{
			at(inbound, 0, b2bua.EventRinging, rung(ivanov)),
			at(inbound, 1, b2bua.EventAnswered, answered(ivanov, ivanov)),
			at(inbound, 11, b2bua.EventTransferred, transferred(ivanov, petrov, "blind", ivanov, petrov)),
			at(inbound, 21, b2bua.EventTransferred, transferred(petrov, ivanov2, "attended", ivanov, petrov, ivanov2)),
			at(inbound, 26, b2bua.EventEnded, ended(b2bua.ResultAnswered, "outside", ivanov, petrov, ivanov2)),
		}, result: "answered", rung: "ivanov,petrov", by: "ivanov", wait: 1, talk: 25,
			legs:      []leg{{"ivanov", "101", "", 10}, {"petrov", "103", "ivanov", 10}, {"ivanov", "102", "petrov", 5}},
			transfers: "ivanov>petrov/blind,petrov>ivanov/attended"},
		{name: "transfer to an outside number ends the employee's leg", events: []b2bua.Event{
			at(inbound, 0, b2bua.EventRinging, rung(ivanov)),
			at(inbound, 3, b2bua.EventAnswered, answered(ivanov, ivanov)),
			at(inbound, 8, b2bua.EventTransferred, transferred(ivanov, outside, "blind", ivanov)),
			at(inbound, 20, b2bua.EventEnded, ended(b2bua.ResultAnswered, "outside", ivanov)),
		}, result: "answered", rung: "ivanov", by: "ivanov", wait: 3, talk: 17,
			legs: []leg{{"ivanov", "101", "", 5}}, transfers: "ivanov>79169999999/blind"},
		{name: "refused before ringing", events: []b2bua.Event{
			at(inbound, 0.5, b2bua.EventEnded, ended(b2bua.ResultFailed, "system")),
		}, result: "failed", wait: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, events := model(t, false, false)
			for _, e := range tc.events {
				m.CallEvent(e)
			}
			var last *calls.Record
			for range tc.events {
				last = (<-events).Record
			}
			r := last
			if r.Result != tc.result || strings.Join(r.Rung, ",") != tc.rung || r.AnsweredBy != tc.by || r.WaitSeconds != tc.wait || r.TalkSeconds != tc.talk {
				t.Fatalf("result %q rung %v by %q wait %v talk %v; want %q %q %q %v %v", r.Result, r.Rung, r.AnsweredBy, r.WaitSeconds, r.TalkSeconds,
					tc.result, tc.rung, tc.by, tc.wait, tc.talk)
			}
			if len(r.Legs) != len(tc.legs) {
				t.Fatalf("legs %+v", r.Legs)
			}
			for i, want := range tc.legs {
				l := r.Legs[i]
				if l.N != i+1 || l.Employee != want.employee || l.Extension != want.extension || l.TransferredFrom != want.from ||
					l.TalkSeconds != want.talk || l.Ended.IsZero() {
					t.Fatalf("leg %d %+v, want %+v", i+1, l, want)
				}
			}
			var transfers []string
			for _, x := range r.Transfers {
				transfers = append(transfers, x.From+">"+x.To+"/"+x.Mode)
			}
			if got := strings.Join(transfers, ","); got != tc.transfers {
				t.Fatalf("transfers %q, want %q", got, tc.transfers)
			}
			if r.Ended != tc.events[len(tc.events)-1].At || r.ID != "c1" || r.Direction != "inbound" || r.Internal {
				t.Fatalf("record %+v", r)
			}
			// Written behind the call, by the model's writer.
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				saved, err := m.Store().Get("c1")
				if err == nil && saved.Result == tc.result && len(saved.Legs) == len(tc.legs) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("stored %+v, %v", saved, err)
				}
			}
		})
	}
}

// A call's numbers are normalised, the trunk number and static tracking
// come from the account, and an internal call is marked internal.
func TestRecordNumbersAndTracking(t *testing.T) {
	m, events := model(t, false, false)
	m.CallEvent(at(inbound, 0, b2bua.EventRinging, nil))
	r := (<-events).Record
	if r.Outside != "+79161234567" || r.TrunkNumber != "+74951234567" || r.Account != "sales1" || r.Caller != "79161234567" {
		t.Fatalf("numbers %+v", r)
	}
	if r.Tracking == nil || r.Tracking.Number != "+74951234567" || r.Tracking.Source != "yandex" || r.Tracking.Dynamic {
		t.Fatalf("tracking %+v", r.Tracking)
	}
	sup := inbound
	sup.CallID, sup.Account = "c3", "support"
	m.CallEvent(at(sup, 0, b2bua.EventRinging, nil))
	if r := (<-events).Record; r.Tracking == nil || r.Tracking.Source != "+74950000000" {
		t.Fatalf("a number without a source is its own source: %+v", r.Tracking)
	}
	m.CallEvent(at(internal, 0, b2bua.EventRinging, nil))
	if r := (<-events).Record; !r.Internal || r.Direction != "internal" || r.Tracking != nil || r.Outside != "103" {
		t.Fatalf("internal call %+v", r)
	}
}

// Each answered leg is recorded from the session the B2BUA opened for the
// call (handed over in the events), its tap removed when the leg ends; the
// RTP statistics are read from the same session. Internal calls are
// recorded only when configured.
func TestRecordingAndStatsFromTheCallsMedia(t *testing.T) {
	for _, tc := range []struct {
		name           string
		call           b2bua.Event
		recordInternal bool
		recorded       bool
	}{
		{"inbound", inbound, false, true},
		{"internal, not configured", internal, false, false},
		{"internal, configured", internal, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, events := model(t, true, tc.recordInternal)
			media := &fakeMedia{stats: [2]relay.Stats{
				relay.A: {Packets: 500, Bytes: 80000, Lost: 2, Jitter: 3 * time.Millisecond},
				relay.B: {Packets: 499, Bytes: 79840},
			}}
			withMedia := func(set func(*b2bua.Event)) func(*b2bua.Event) {
				return func(e *b2bua.Event) {
					e.Media = media
					if set != nil {
						set(e)
					}
				}
			}
			m.CallEvent(at(tc.call, 0, b2bua.EventRinging, withMedia(nil)))
			m.CallEvent(at(tc.call, 1, b2bua.EventAnswered, withMedia(func(e *b2bua.Event) { e.Answered = ivanov })))
			m.CallEvent(at(tc.call, 5, b2bua.EventTransferred, withMedia(func(e *b2bua.Event) {
				e.TransferFrom, e.Answered, e.TransferMode = ivanov, petrov, "blind"
			})))
			m.CallEvent(at(tc.call, 9, b2bua.EventEnded, withMedia(func(e *b2bua.Event) { e.Result = b2bua.ResultAnswered })))
			var r *calls.Record
			for range 4 {
				r = (<-events).Record
			}
			taps := media.tapHistory()
			if tc.recorded {
				if len(taps) != 4 || !taps[0] || taps[1] || !taps[2] || taps[3] {
					t.Fatalf("taps %v, want on, off, on, off (a recording per leg)", taps)
				}
				for i, l := range r.Legs {
					if !strings.HasSuffix(l.Recording, ".wav") || !strings.Contains(l.Recording, tc.call.CallID) {
						t.Fatalf("leg %d recording %q", i+1, l.Recording)
					}
				}
				if r.Legs[0].Recording == r.Legs[1].Recording {
					t.Fatal("two legs share a recording")
				}
			} else if len(taps) != 0 || r.Legs[0].Recording != "" {
				t.Fatalf("recorded: taps %v, recording %q", taps, r.Legs[0].Recording)
			}
			if r.RTP == nil || r.RTP.Outside.Packets != 500 || r.RTP.Outside.Lost != 2 || r.RTP.Outside.JitterMs != 3 || r.RTP.Employee.Packets != 499 {
				t.Fatalf("RTP %+v", r.RTP)
			}
		})
	}
}

// Without media (refused before it was opened) or without a recorder there
// is nothing to tap, and no statistics.
func TestNoMediaNoRecordingNoStats(t *testing.T) {
	m, events := model(t, true, false)
	m.CallEvent(at(inbound, 0, b2bua.EventAnswered, func(e *b2bua.Event) { e.Answered = ivanov }))
	m.CallEvent(at(inbound, 3, b2bua.EventEnded, func(e *b2bua.Event) { e.Result = b2bua.ResultAnswered }))
	<-events
	if r := (<-events).Record; r.RTP != nil || r.Legs[0].Recording != "" {
		t.Fatalf("record %+v", r)
	}
}

// What a subscriber got does not change when the call goes on: every event
// carries its own snapshot.
func TestPublishedRecordsAreSnapshots(t *testing.T) {
	m, events := model(t, false, false)
	m.CallEvent(at(inbound, 0, b2bua.EventRinging, func(e *b2bua.Event) { e.Rung = []b2bua.Target{ivanov} }))
	m.CallEvent(at(inbound, 2, b2bua.EventAnswered, func(e *b2bua.Event) { e.Rung, e.Answered = []b2bua.Target{ivanov}, ivanov }))
	ringing, answered := <-events, <-events
	m.CallEvent(at(inbound, 5, b2bua.EventTransferred, func(e *b2bua.Event) {
		e.Rung, e.TransferFrom, e.Answered, e.TransferMode = []b2bua.Target{ivanov}, ivanov, petrov, "blind"
	}))
	m.CallEvent(at(inbound, 9, b2bua.EventEnded, func(e *b2bua.Event) { e.Rung, e.Result = []b2bua.Target{ivanov}, b2bua.ResultAnswered }))
	<-events
	<-events
	if ringing.Kind != b2bua.EventRinging || len(ringing.Record.Legs) != 0 || !ringing.Record.Answered.IsZero() {
		t.Fatalf("ringing snapshot changed: %+v", ringing.Record)
	}
	if answered.Kind != b2bua.EventAnswered || len(answered.Record.Legs) != 1 || !answered.Record.Legs[0].Ended.IsZero() ||
		len(answered.Record.Rung) != 1 || !answered.Record.Ended.IsZero() {
		t.Fatalf("answered snapshot changed: %+v", answered.Record)
	}
}

// callgate_calls_total counts ended calls by direction and result;
// callgate_call_setup_seconds observes answered calls only.
func TestCallMetrics(t *testing.T) {
	m, _ := model(t, false, false)
	m.CallEvent(at(inbound, 0, b2bua.EventAnswered, func(e *b2bua.Event) { e.Answered = ivanov }))
	m.CallEvent(at(inbound, 5, b2bua.EventEnded, func(e *b2bua.Event) { e.Result = b2bua.ResultAnswered }))
	missed := inbound
	missed.CallID = "c9"
	m.CallEvent(at(missed, 0, b2bua.EventRinging, nil))
	m.CallEvent(at(missed, 30, b2bua.EventEnded, func(e *b2bua.Event) { e.Result = b2bua.ResultNoAnswer }))
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collectors()...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			name := f.GetName()
			for _, l := range mt.GetLabel() {
				name += "," + l.GetName() + "=" + l.GetValue()
			}
			if h := mt.GetHistogram(); h != nil {
				got[name+",count"] = float64(h.GetSampleCount())
				got[name+",sum"] = h.GetSampleSum()
			} else {
				got[name] = mt.GetCounter().GetValue()
			}
		}
	}
	want := map[string]float64{
		"callgate_calls_total,direction=inbound,result=answered":  1,
		"callgate_calls_total,direction=inbound,result=no-answer": 1,
		"callgate_call_setup_seconds,count":                       1,
		"callgate_call_setup_seconds,sum":                         0, // answered at once
	}
	if len(got) != len(want) {
		t.Fatalf("metrics %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("metrics %v, want %v", got, want)
		}
	}
}
