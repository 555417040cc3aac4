package storehealth_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"callgate/crm/outbox"
	"callgate/gateway/api"
	"callgate/gateway/calls"
	"callgate/gateway/store"
	"callgate/gateway/storehealth"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
)

// fullStore is callgate's database on a disk that fills up and is freed.
type fullStore struct {
	*store.Store
	full atomic.Bool
}

var errNoSpace = &writeErr{}

type writeErr struct{}

func (*writeErr) Error() string {
	return "write /var/lib/callgate/callgate.db: " + syscall.ENOSPC.Error()
}
func (*writeErr) Unwrap() error { return syscall.ENOSPC }

func (s *fullStore) Update(fn func(*bolt.Tx) error) error {
	if s.full.Load() {
		return errNoSpace
	}
	return s.Store.Update(fn)
}

// deliverNothing is a CRM that takes everything.
type deliverNothing struct{}

func (deliverNothing) Deliver(context.Context, *outbox.Item) error { return nil }

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// A call record and CRM operations written while the database's disk is
// full wait in memory; /readyz, the metrics and the admin view say so; when
// space returns they land.
func TestFullDataDiskWritesWaitAreReportedAndLand(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fs := &fullStore{Store: db}
	cs := calls.NewStore(db)
	saver := calls.NewWriter(func(rs []calls.Record) error {
		if fs.full.Load() {
			return errNoSpace
		}
		return cs.PutAll(rs)
	}, slog.Default())
	saver.MinBackoff, saver.MaxBackoff = 20*time.Millisecond, 50*time.Millisecond
	box, err := outbox.Open(fs, "retailcrm", deliverNothing{}, outbox.Options{SaveMinBackoff: 20 * time.Millisecond, SaveMaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h := &storehealth.Health{Dir: dir, Sources: func() []storehealth.Source {
		return []storehealth.Source{storehealth.CallRecords(saver), storehealth.Outbox(box)}
	}}
	in := make(chan calls.Record, 4)
	saved := make(chan struct{})
	go func() { saver.Run(in); close(saved) }()
	ctx, cancel := context.WithCancel(context.Background())
	boxDone := make(chan struct{})
	go func() { box.Run(ctx); close(boxDone) }()
	defer func() { close(in); <-saved; cancel(); <-boxDone }()

	reg := prometheus.NewRegistry()
	reg.MustRegister(h.Collectors()...)
	srv := (&api.Server{Tokens: api.NewTokens([]string{"admin-token-for-tests"}), Ready: []api.Check{{Name: "store_writes", Fn: h.Ready}}}).Handler()
	readyz := func() (int, string) {
		req := httptest.NewRequest("GET", "/readyz", nil)
		req.Header.Set("Authorization", "Bearer admin-token-for-tests")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}
	if code, body := readyz(); code != http.StatusOK {
		t.Fatalf("ready before the disk filled: %d %s", code, body)
	}

	fs.full.Store(true)
	now := time.Now()
	in <- calls.Record{ID: "after-full", Started: now, Ended: now.Add(time.Minute), Result: "answered"}
	if err := box.Put(outbox.Item{Key: "after-full-1-ended", Call: "after-full", Kind: "ended", Body: []byte(`{}`)}); err != nil {
		t.Fatalf("outbox put on a full disk: %v", err)
	}
	waitUntil(t, "write errors", func() bool { return h.Writes().Errors >= 2 })
	code, body := readyz()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "store_writes") || !strings.Contains(body, "2 writes wait in memory") ||
		!strings.Contains(body, "no space left") {
		t.Fatalf("readyz while writes wait: %d %s", code, body)
	}
	if v := metricValue(t, reg, "callgate_store_pending_writes"); v != 2 {
		t.Fatalf("pending writes gauge %v", v)
	}
	if v := metricValue(t, reg, "callgate_store_write_errors_total"); v < 2 {
		t.Fatalf("write errors %v", v)
	}
	var view map[string]any
	b, _ := json.Marshal(h.View())
	_ = json.Unmarshal(b, &view)
	if view["pending_writes"] != float64(2) || view["dir"] != dir || view["free_bytes"].(float64) <= 0 {
		t.Fatalf("admin view %s", b)
	}
	if _, err := cs.Get("after-full"); !errors.Is(err, calls.ErrNotFound) {
		t.Fatal("record written while the disk is full")
	}

	fs.full.Store(false) // space freed
	waitUntil(t, "writes to land", func() bool { return h.Writes().Pending == 0 })
	if r, err := cs.Get("after-full"); err != nil || r.Result != "answered" {
		t.Fatalf("record after space returned: %+v %v", r, err)
	}
	if code, body := readyz(); code != http.StatusOK {
		t.Fatalf("not ready after writes landed: %d %s", code, body)
	}
	if v := metricValue(t, reg, "callgate_store_pending_writes"); v != 0 {
		t.Fatalf("pending writes gauge %v after recovery", v)
	}
	if v := metricValue(t, reg, "callgate_store_lost_writes_total"); v != 0 {
		t.Fatalf("lost %v", v)
	}
}

// The sum names the error of a writer still waiting, not one overcome.
func TestWritesSum(t *testing.T) {
	fixed := func(w storehealth.Writes) storehealth.Source { return func() storehealth.Writes { return w } }
	h := &storehealth.Health{Sources: func() []storehealth.Source {
		return []storehealth.Source{
			fixed(storehealth.Writes{Errors: 3, LastError: "recovered"}),
			fixed(storehealth.Writes{Pending: 2, Errors: 1, Lost: 1, LastError: "no space left on device"}),
			fixed(storehealth.Writes{Pending: 1, LastError: "later"}),
		}
	}}
	if got := h.Writes(); got != (storehealth.Writes{Pending: 3, Errors: 4, Lost: 1, LastError: "no space left on device"}) {
		t.Fatalf("sum %+v", got)
	}
	if err := h.Ready(); err == nil || !strings.Contains(err.Error(), "3 writes wait") {
		t.Fatalf("ready: %v", err)
	}
	if err := (&storehealth.Health{}).Ready(); err != nil {
		t.Fatalf("no writers: %v", err)
	}
}
