package gateway

import (
	"fmt"
	"path/filepath"

	"callgate/gateway/api"
	"callgate/media/record"

	"github.com/prometheus/client_golang/prometheus"
)

// writesStatus sums what waits in memory for the database: call records
// and CRM operations the disk refused.
type writesStatus struct {
	Pending   int    `json:"pending_writes"`
	Errors    uint64 `json:"write_errors"`
	Lost      uint64 `json:"lost_writes"`
	LastError string `json:"last_write_error,omitempty"`
}

func (g *Gateway) writes() writesStatus {
	var s writesStatus
	if g.saver != nil {
		c := g.saver.Status()
		s.Pending, s.Errors, s.Lost = c.Pending, c.Errors, c.Lost
		if c.Pending > 0 {
			s.LastError = c.LastError
		}
	}
	for _, box := range g.outboxes {
		b := box.Status()
		s.Pending += b.Unsaved
		s.Errors += b.WriteErrors
		s.Lost += b.Lost
		if b.Unsaved > 0 && s.LastError == "" {
			s.LastError = b.LastWriteError
		}
	}
	return s
}

// storeWritesCheck fails /readyz while anything waits for the database, so
// a full disk under the data dir is seen before the memory queues fill.
func (g *Gateway) storeWritesCheck() api.Check {
	return api.Check{Name: "store_writes", Fn: func() error {
		s := g.writes()
		if s.Pending == 0 {
			return nil
		}
		return fmt.Errorf("%d writes wait in memory for the database (is the disk full?): %s", s.Pending, s.LastError)
	}}
}

// storeMetrics are callgate_store_pending_writes, _write_errors_total and
// _lost_writes_total.
func (g *Gateway) storeMetrics() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_store_pending_writes",
			Help: "Call records and CRM operations kept in memory because the database could not be written (disk full); saved when it can."},
			func() float64 { return float64(g.writes().Pending) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_store_write_errors_total",
			Help: "Failed writes of call records and CRM operations to the database."},
			func() float64 { return float64(g.writes().Errors) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_store_lost_writes_total",
			Help: "Call records and CRM operations lost: memory queue full, or still unwritten at shutdown."},
			func() float64 { return float64(g.writes().Lost) }),
	}
}

// storeView is the admin page's database part.
type storeView struct {
	Dir       string `json:"dir"`
	FreeBytes uint64 `json:"free_bytes"`
	writesStatus
}

func (g *Gateway) storeView() storeView {
	v := storeView{Dir: g.cfg.DataDir, writesStatus: g.writes()}
	v.FreeBytes = freeBytesAt(g.cfg.DataDir)
	return v
}

// freeBytesAt is the free space of the filesystem dir is (or will be) on.
func freeBytesAt(dir string) uint64 {
	for p := dir; ; p = filepath.Dir(p) {
		if free, err := record.FreeBytes(p); err == nil || p == filepath.Dir(p) {
			return free
		}
	}
}
