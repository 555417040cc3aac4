// Package storehealth tells whether what callgate writes to its database
// lands: call records and CRM operations the disk refused wait in memory
// and are retried, and this package sums them up for /readyz, the metrics
// and the admin page, so that a full disk under the data dir is seen
// before the memory queues fill.
package storehealth

import (
	"fmt"

	"callgate/crm/outbox"
	"callgate/gateway/calls"
	"callgate/media/record"

	"github.com/prometheus/client_golang/prometheus"
)

// Writes sums what waits in memory for the database.
type Writes struct {
	Pending   int    `json:"pending_writes"`             // records and operations waiting now
	Errors    uint64 `json:"write_errors"`               // failed writes since start
	Lost      uint64 `json:"lost_writes"`                // dropped: queue full, or unwritten at shutdown
	LastError string `json:"last_write_error,omitempty"` // why writes wait
}

// Source is one writer that keeps in memory what the database refuses.
type Source func() Writes

// CallRecords is the call records' writer as a Source.
func CallRecords(w *calls.Writer) Source {
	return func() Writes {
		c := w.Status()
		return Writes{Pending: c.Pending, Errors: c.Errors, Lost: c.Lost, LastError: c.LastError}
	}
}

// Outbox is a CRM outbox as a Source.
func Outbox(b *outbox.Outbox) Source {
	return func() Writes {
		s := b.Status()
		return Writes{Pending: s.Unsaved, Errors: s.WriteErrors, Lost: s.Lost, LastError: s.LastWriteError}
	}
}

// Health watches the database's writers.
type Health struct {
	// Dir is the data dir, whose free space the admin page shows.
	Dir string
	// Sources lists the writers; it is called at every look, as writers
	// are set up at different times (the CRM outboxes after the API).
	Sources func() []Source
}

// Writes sums the sources now. The last error is that of the first
// source with writes waiting: an error already overcome is no news.
func (h *Health) Writes() Writes {
	var sum Writes
	if h.Sources == nil {
		return sum
	}
	for _, src := range h.Sources() {
		w := src()
		sum.Pending += w.Pending
		sum.Errors += w.Errors
		sum.Lost += w.Lost
		if w.Pending > 0 && sum.LastError == "" {
			sum.LastError = w.LastError
		}
	}
	return sum
}

// Ready fails while anything waits for the database (a readiness check).
func (h *Health) Ready() error {
	s := h.Writes()
	if s.Pending == 0 {
		return nil
	}
	return fmt.Errorf("%d writes wait in memory for the database (is the disk full?): %s", s.Pending, s.LastError)
}

// Collectors are callgate_store_pending_writes, _write_errors_total and
// _lost_writes_total.
func (h *Health) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_store_pending_writes",
			Help: "Call records and CRM operations kept in memory because the database could not be written (disk full); saved when it can."},
			func() float64 { return float64(h.Writes().Pending) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_store_write_errors_total",
			Help: "Failed writes of call records and CRM operations to the database."},
			func() float64 { return float64(h.Writes().Errors) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_store_lost_writes_total",
			Help: "Call records and CRM operations lost: memory queue full, or still unwritten at shutdown."},
			func() float64 { return float64(h.Writes().Lost) }),
	}
}

// View is the admin page's database part.
type View struct {
	Dir       string `json:"dir"`        // data_dir
	FreeBytes uint64 `json:"free_bytes"` // free space of its filesystem
	Writes
}

// View is the database's state for the admin page: free space under the
// data dir and the writes waiting.
func (h *Health) View() View {
	free, _ := record.FreeBytes(h.Dir) // the store is open there: it exists
	return View{Dir: h.Dir, FreeBytes: free, Writes: h.Writes()}
}
