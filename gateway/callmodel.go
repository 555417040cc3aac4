package gateway

import (
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"callgate/crm"
	"callgate/gateway/calls"
	"callgate/gateway/routing"
	"callgate/gateway/tracking"
	"callgate/media/record"
	"callgate/media/relay"
	"callgate/sip/b2bua"

	"github.com/prometheus/client_golang/prometheus"
)

// relayMedia adapts the relay to what the B2BUA asks of media.
type relayMedia struct{ r *relay.Relay }

func (m relayMedia) Open(id string) (b2bua.MediaSession, error) {
	s, err := m.r.Open(id)
	if err != nil {
		return nil, err
	}
	return relaySession{s}, nil
}

type relaySession struct{ *relay.Session }

func (s relaySession) Port(side int) int { return s.Session.Port(relay.Side(side)) }
func (s relaySession) Park(side int)     { s.Session.Park(relay.Side(side)) }
func (s relaySession) Ringback(side int, pt uint8) func() {
	return s.Session.Ringback(relay.Side(side), pt)
}
func (s relaySession) SetRemote(side int, a netip.AddrPort) {
	s.Session.SetRemote(relay.Side(side), a)
}

// callModel turns B2BUA events into call records and recordings. Events of
// one call arrive in order from that call's goroutine; records are written
// by a separate goroutine so no call waits for the disk.
type callModel struct {
	log      *slog.Logger
	store    *calls.Store
	relay    *relay.Relay
	rec      *record.Recorder // nil: recording disabled
	internal bool             // record internal calls
	region   string
	numbers  map[string]string // account -> trunk number
	sources  map[string]string // account -> advertising channel
	dynamic  map[string]bool   // accounts on dynamic call-tracking numbers
	track    *tracking.Tracker // nil: no Mango API configured

	bus   *calls.Bus
	total *prometheus.CounterVec
	setup prometheus.Histogram

	mu     sync.Mutex
	open   map[string]*openCall
	writes chan calls.Record
	// saver keeps records the database refuses (disk full) and retries.
	saver *calls.Writer
	done  chan struct{}
}

type openCall struct {
	rec   calls.Record
	rc    *record.Call
	media *relay.Session
}

func newCallModel(g *Gateway) *callModel {
	m := &callModel{log: g.log, store: calls.NewStore(g.store), relay: g.relay, internal: g.cfg.Recording.Internal,
		region: g.cfg.Calls.DefaultRegion, numbers: map[string]string{}, sources: map[string]string{}, dynamic: map[string]bool{},
		track: g.track, open: map[string]*openCall{},
		writes: make(chan calls.Record, 1024), done: make(chan struct{}), bus: calls.NewBus(),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callgate_calls_total", Help: "Calls ended, by direction and result."}, []string{"direction", "result"}),
		setup: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "callgate_call_setup_seconds", Help: "Time from a call's arrival to its answer.",
			Buckets: []float64{0.5, 1, 2, 5, 10, 20, 30, 60}})}
	if g.cfg.Recording.Enabled {
		m.rec = g.recorder
	}
	for _, a := range g.cfg.Upstream.Accounts {
		m.numbers[a.User] = a.Number
		if n, err := routing.Normalize(a.Number, g.cfg.Calls.DefaultRegion); err == nil {
			m.numbers[a.User] = n
		}
		m.sources[a.User] = a.Source
		m.dynamic[a.User] = a.Tracking == "dynamic"
	}
	m.saver = calls.NewWriter(m.store.PutAll, g.log.With("component", "calls"))
	m.store.ShowUnsaved(m.saver)
	go func() {
		defer close(m.done)
		m.saver.Run(m.writes)
	}()
	return m
}

// close waits for pending record writes.
func (m *callModel) close() {
	close(m.writes)
	<-m.done
}

// CallEvent implements b2bua.Observer.
func (m *callModel) CallEvent(e b2bua.Event) {
	m.mu.Lock()
	oc := m.open[e.CallID]
	if oc == nil {
		oc = &openCall{rec: calls.Record{ID: e.CallID, Direction: string(e.Direction), Origin: e.Origin, Internal: e.Direction == b2bua.Internal,
			Account: e.Account, TrunkNumber: m.numbers[e.Account], Caller: e.Caller, Started: e.At, Legs: []calls.Leg{}}}
		if n, err := routing.Normalize(e.Outside, m.region); err == nil {
			oc.rec.Outside = n
		} else {
			oc.rec.Outside = e.Outside
		}
		oc.media, _ = m.relay.Get(e.CallID)
		if n := oc.rec.TrunkNumber; e.Direction == b2bua.Inbound && n != "" {
			t := &crm.Tracking{Number: n, Marks: crm.Marks{Source: m.sources[e.Account]}, Dynamic: m.dynamic[e.Account]}
			if t.Source == "" {
				t.Source = n
			}
			oc.rec.Tracking = t
			if t.Dynamic && m.track != nil {
				m.track.Start(e.CallID, n)
			}
		}
		m.open[e.CallID] = oc
	}
	m.mu.Unlock()
	r := &oc.rec
	seen := map[string]bool{}
	r.Rung = r.Rung[:0]
	for _, t := range e.Rung {
		if t.Employee != "" && !seen[t.Employee] {
			seen[t.Employee] = true
			r.Rung = append(r.Rung, t.Employee)
		}
	}
	switch e.Kind {
	case b2bua.EventRinging:
		if r.Ringing.IsZero() {
			r.Ringing = e.At
		}
	case b2bua.EventAnswered:
		r.Answered = e.At
		r.AnsweredBy = e.Answered.Employee
		r.WaitSeconds = e.At.Sub(r.Started).Seconds()
		leg := calls.Leg{N: len(r.Legs) + 1, Employee: e.Answered.Employee, Extension: e.Answered.Extension, Answered: e.At}
		if m.rec != nil && (!r.Internal || m.internal) {
			m.startRecording(oc, &leg)
		}
		r.Legs = append(r.Legs, leg)
	case b2bua.EventTransferred:
		m.endLeg(oc, e.At)
		to := e.Answered.Employee
		if to == "" {
			to = e.Answered.Extension // a number through the VPBX
		}
		from := e.TransferFrom.Employee
		if from == "" {
			from = e.TransferFrom.Extension
		}
		r.Transfers = append(r.Transfers, calls.Transfer{From: from, To: to, Mode: e.TransferMode, At: e.At})
		if e.Answered.Employee != "" {
			if !slices.Contains(r.Rung, e.Answered.Employee) {
				r.Rung = append(r.Rung, e.Answered.Employee)
			}
			leg := calls.Leg{N: len(r.Legs) + 1, Employee: e.Answered.Employee, Extension: e.Answered.Extension, Answered: e.At, TransferredFrom: from}
			if m.rec != nil && (!r.Internal || m.internal) {
				m.startRecording(oc, &leg)
			}
			r.Legs = append(r.Legs, leg)
		}
	case b2bua.EventEnded:
		r.Ended, r.Result, r.HangupBy, r.Reason = e.At, e.Result, e.HangupBy, e.Reason
		if !r.Answered.IsZero() {
			r.TalkSeconds = e.At.Sub(r.Answered).Seconds()
		} else {
			r.WaitSeconds = e.At.Sub(r.Started).Seconds()
		}
		m.endLeg(oc, e.At)
		if oc.media != nil {
			stat := func(s relay.Stats) calls.RTPStats {
				return calls.RTPStats{Packets: s.Packets, Bytes: s.Bytes, Lost: s.Lost, JitterMs: float64(s.Jitter) / 1e6}
			}
			r.RTP = &calls.RTP{Outside: stat(oc.media.Stats(relay.A)), Employee: stat(oc.media.Stats(relay.B))}
		}
		m.observe(r)
		m.mu.Lock()
		delete(m.open, e.CallID)
		m.mu.Unlock()
	}
	if t := r.Tracking; t != nil && t.Dynamic && t.Medium == "" && m.track != nil {
		if v := m.track.Get(r.ID); v != nil {
			r.Tracking = visited(t.Number, v)
		}
	}
	rc := cloneRecord(r)
	m.writes <- rc
	m.bus.Publish(calls.Event{Kind: e.Kind, Record: rc})
}

// endLeg closes the current leg and its recording segment.
func (m *callModel) endLeg(oc *openCall, at time.Time) {
	r := &oc.rec
	n := len(r.Legs)
	if n == 0 || !r.Legs[n-1].Ended.IsZero() {
		return
	}
	leg := &r.Legs[n-1]
	leg.Ended = at
	leg.TalkSeconds = at.Sub(leg.Answered).Seconds()
	if oc.rc != nil {
		if oc.media != nil {
			oc.media.SetTap(nil)
		}
		if size, err := oc.rc.Close(); err == nil {
			leg.RecordingBytes = size
			leg.RecordingTruncated = oc.rc.Truncated()
		} else {
			m.log.Warn("closing recording failed", "call_id", r.ID, "error", err)
		}
		oc.rc = nil
	}
}

// observe feeds the call metrics when a call ends.
func (m *callModel) observe(r *calls.Record) {
	m.total.WithLabelValues(r.Direction, r.Result).Inc()
	if !r.Answered.IsZero() {
		m.setup.Observe(r.WaitSeconds)
	}
}

func (m *callModel) startRecording(oc *openCall, leg *calls.Leg) {
	s, ok := m.relay.Get(oc.rec.ID)
	if !ok {
		return
	}
	rc, err := m.rec.Start(oc.rec.ID, itoa(leg.N), leg.Answered)
	if err != nil {
		m.log.Warn("call not recorded", "call_id", oc.rec.ID, "error", err)
		return
	}
	oc.rc = rc
	rel, _ := filepath.Rel(m.rec.Dir, rc.Path())
	leg.Recording = rel
	s.SetTap(func(side relay.Side, seq uint16, ts uint32, pt uint8, payload []byte) {
		rc.Push(int(side), seq, ts, pt, payload)
	})
}

func cloneRecord(r *calls.Record) calls.Record {
	c := *r
	c.Rung = append([]string(nil), r.Rung...)
	c.Legs = append([]calls.Leg(nil), r.Legs...)
	return c
}

// visited is the tracking of a call to a dynamic number whose visitor is
// known.
func visited(number string, v *crm.Marks) *crm.Tracking {
	return &crm.Tracking{Number: number, Marks: *v, Dynamic: true}
}
