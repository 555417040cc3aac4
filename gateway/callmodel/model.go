// Package callmodel turns the B2BUA's call events into call records: who
// was rung, the legs each employee talked on, transfers, the result, the
// recording of each leg and the RTP statistics. Every change is written
// (by a separate goroutine, so no call waits for the disk) and published on
// the bus for the console and the CRMs.
package callmodel

import (
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"callgate/crm"
	"callgate/gateway/calls"
	"callgate/gateway/config"
	"callgate/gateway/recordings"
	"callgate/gateway/routing"
	"callgate/gateway/tracking"
	"callgate/media/relay"
	"callgate/sip/b2bua"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is what the model needs to know and whom it hands recordings to.
type Config struct {
	// Store keeps the records (required).
	Store *calls.Store
	// Accounts are the upstream accounts: a call's trunk number, its
	// advertising source and whether the number is a dynamic
	// call-tracking one come from the account it arrived on.
	Accounts []config.Account
	// Region is the default region numbers are normalised in.
	Region string
	// Recordings records answered calls (nil: recording disabled).
	Recordings Recordings
	// RecordInternal records internal calls too.
	RecordInternal bool
	// Tracker finds the website visit behind a call to a dynamic
	// call-tracking number (nil: no Mango API configured).
	Tracker *tracking.Tracker
	// Clients names the outside party of each call from the CRMs (nil:
	// calls are not named).
	Clients ClientFinder
	// Log is told of recordings that fail (nil: slog.Default()).
	Log *slog.Logger
}

// Recordings starts a leg's recording; the recording's Name is what the
// call record keeps.
type Recordings interface {
	Start(callID string, leg int, at time.Time) (*recordings.Recording, error)
}

// Model turns B2BUA events into call records and recordings. Events of one
// call arrive in order from that call's goroutine; records are written by a
// separate goroutine so no call waits for the disk.
type Model struct {
	log      *slog.Logger
	store    *calls.Store
	rec      Recordings
	internal bool
	region   string
	track    *tracking.Tracker
	clients  ClientFinder

	bus   *calls.Bus
	total *prometheus.CounterVec
	setup prometheus.Histogram

	mu      sync.Mutex
	numbers map[string]string // account -> trunk number
	sources map[string]string // account -> advertising channel
	dynamic map[string]bool   // accounts on dynamic call-tracking numbers
	open    map[string]*openCall
	// late holds ended calls' final records while their client lookup
	// goes on.
	late   map[string]*calls.Record
	closed bool
	writes chan calls.Record
	// saver keeps records the database refuses (disk full) and retries.
	saver *calls.Writer
	done  chan struct{}
}

type openCall struct {
	rec calls.Record
	rc  *recordings.Recording
	// media is the session the B2BUA opened for the call: the one the
	// recording taps and the statistics are read from.
	media b2bua.CallMedia
	// naming is set while the CRMs are asked who the client is; client is
	// their answer, waiting for the call's next event.
	naming bool
	client *crm.Client
}

// New returns a model writing to cfg.Store; Close stops its writer.
func New(cfg Config) *Model {
	m := &Model{log: cfg.Log, store: cfg.Store, rec: cfg.Recordings, internal: cfg.RecordInternal,
		region: cfg.Region, track: cfg.Tracker, clients: cfg.Clients, open: map[string]*openCall{}, late: map[string]*calls.Record{},
		writes: make(chan calls.Record, 1024), done: make(chan struct{}), bus: calls.NewBus(),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callgate_calls_total", Help: "Calls ended, by direction and result."}, []string{"direction", "result"}),
		setup: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "callgate_call_setup_seconds", Help: "Time from a call's arrival to its answer.",
			Buckets: []float64{0.5, 1, 2, 5, 10, 20, 30, 60}})}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.setAccounts(cfg.Accounts)
	m.saver = calls.NewWriter(m.store.PutAll, m.log.With("component", "calls"))
	m.store.ShowUnsaved(m.saver)
	go func() {
		defer close(m.done)
		m.saver.Run(m.writes)
	}()
	return m
}

// Store is where the records are kept (history and statistics queries).
func (m *Model) Store() *calls.Store { return m.store }

// Bus publishes every change of a call.
func (m *Model) Bus() *calls.Bus { return m.bus }

// Writer is the queue of records waiting for the database.
func (m *Model) Writer() *calls.Writer { return m.saver }

// Collectors are the call metrics: callgate_calls_total and
// callgate_call_setup_seconds.
func (m *Model) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.total, m.setup}
}

// Close waits for pending record writes. No event may come after it (the
// B2BUA has stopped).
func (m *Model) Close() {
	m.mu.Lock()
	m.closed = true // a client lookup answering now writes nothing
	m.mu.Unlock()
	close(m.writes)
	<-m.done
}

// CallEvent implements b2bua.Observer.
func (m *Model) CallEvent(e b2bua.Event) {
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
		m.startNaming(oc)
	}
	takeName(oc)
	m.mu.Unlock()
	if e.Media != nil {
		oc.media = e.Media
	}
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
		m.startRecording(oc, &leg)
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
			m.startRecording(oc, &leg)
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
	}
	if t := r.Tracking; t != nil && t.Dynamic && t.Medium == "" && m.track != nil {
		if v := m.track.Get(r.ID); v != nil {
			r.Tracking = &crm.Tracking{Number: t.Number, Marks: *v, Dynamic: true}
		}
	}
	// One snapshot per event: the writer gets a copy of it and every
	// subscriber of the bus shares it.
	snap := snapshot(r)
	m.writes <- *snap
	if e.Kind == b2bua.EventEnded {
		// Only now, after its final record is on its way: a client lookup
		// answering later finds it among the late ones.
		m.mu.Lock()
		delete(m.open, e.CallID)
		m.closeNaming(oc, snap)
		m.mu.Unlock()
	}
	m.bus.Publish(calls.Event{Kind: e.Kind, Record: snap})
}

// endLeg closes the current leg and its recording segment.
func (m *Model) endLeg(oc *openCall, at time.Time) {
	r := &oc.rec
	n := len(r.Legs)
	if n == 0 || !r.Legs[n-1].Ended.IsZero() {
		return
	}
	leg := &r.Legs[n-1]
	leg.Ended = at
	leg.TalkSeconds = at.Sub(leg.Answered).Seconds()
	if oc.rc != nil {
		oc.media.SetTap(nil)
		// What the archive stores beside the recording.
		oc.rc.Meta = map[string]string{"call-id": r.ID, "leg": strconv.Itoa(leg.N), "employee": leg.Employee,
			"client": r.Outside, "started": leg.Answered.UTC().Format(time.RFC3339)}
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
func (m *Model) observe(r *calls.Record) {
	m.total.WithLabelValues(r.Direction, r.Result).Inc()
	if !r.Answered.IsZero() {
		m.setup.Observe(r.WaitSeconds)
	}
}

// startRecording records a new leg from the call's media session, when
// recording is on for this kind of call and the call has media.
func (m *Model) startRecording(oc *openCall, leg *calls.Leg) {
	if m.rec == nil || oc.media == nil || (oc.rec.Internal && !m.internal) {
		return
	}
	rc, err := m.rec.Start(oc.rec.ID, leg.N, leg.Answered)
	if err != nil {
		m.log.Warn("call not recorded", "call_id", oc.rec.ID, "error", err)
		return
	}
	oc.rc = rc
	leg.Recording = rc.Name
	oc.media.SetTap(func(side relay.Side, seq uint16, ts uint32, pt uint8, payload []byte) {
		rc.Push(int(side), seq, ts, pt, payload)
	})
}

// snapshot copies a record for readers on other goroutines: the model goes
// on changing the open call's record.
func snapshot(r *calls.Record) *calls.Record {
	c := *r
	c.Rung = append([]string(nil), r.Rung...)
	c.Legs = append([]calls.Leg(nil), r.Legs...)
	return &c
}
