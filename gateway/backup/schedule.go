package backup

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync/atomic"
	"time"

	"callgate/gateway/config"
	"callgate/gateway/store"
	"callgate/internal/aside"

	"github.com/prometheus/client_golang/prometheus"
)

// Source writes a consistent copy of the database (store.Store does).
type Source interface {
	Backup(w io.Writer) (int64, error)
}

// Schedule makes a copy of the database every Every into Dir and keeps the
// newest Keep.
type Schedule struct {
	Dir   string
	Every time.Duration
	Keep  int
	// FirstDelay is the least time between start and the first copy, so a
	// start is not slowed by one.
	FirstDelay time.Duration
	Source     Source
	// Verify checks a written copy before it takes a copy's name.
	Verify func(path string) error
	Log    *slog.Logger
	Now    func() time.Time

	ok, failed atomic.Uint64
	lastOK     atomic.Int64 // unix seconds of the last good copy
	lastBytes  atomic.Int64
}

// New is the schedule [backup] configures, or nil when backup.dir is empty.
func New(cfg config.Backup, src Source, log *slog.Logger) *Schedule {
	if cfg.Dir == "" {
		return nil
	}
	return &Schedule{Dir: cfg.Dir, Every: cfg.Every.D(), Keep: cfg.Keep, FirstDelay: time.Minute, Source: src,
		Verify: func(path string) error { _, err := store.VerifyBackup(path, false); return err },
		Log:    log.With("component", "backup"), Now: time.Now}
}

// nameRe matches the copies Schedule writes, and only those: rotation never
// deletes anything else in Dir.
var nameRe = regexp.MustCompile(`^callgate-[0-9]{8}T[0-9]{6}Z\.db$`)

const nameTime = "20060102T150405Z"

// Run makes copies until ctx ends. A copy in progress then stops, leaving
// the copies there were. A nil Schedule does nothing.
func (s *Schedule) Run(ctx context.Context) {
	if s == nil {
		return
	}
	s.removeStale()
	t := time.NewTimer(s.firstWait())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next := s.Every
		if _, err := s.Once(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.Log.Error("scheduled backup failed", "dir", s.Dir, "error", err)
			next = min(s.Every, 10*time.Minute) // try again sooner
		}
		t.Reset(next)
	}
}

// Once writes one copy now and deletes the oldest beyond Keep. A copy that
// fails leaves every earlier one where it was.
func (s *Schedule) Once(ctx context.Context) (string, error) {
	start := s.Now()
	path := filepath.Join(s.Dir, "callgate-"+start.UTC().Format(nameTime)+".db")
	var n int64
	err := os.MkdirAll(s.Dir, 0o750)
	if err == nil {
		aside.Run(func() { // seconds of copying and checking while calls go on
			err = WriteFile(path, 0o600, func(w io.Writer) error {
				var err error
				n, err = s.Source.Backup(ctxWriter{ctx, w})
				return err
			}, s.Verify)
		})
	}
	if err != nil {
		s.failed.Add(1)
		return "", err
	}
	s.ok.Add(1)
	s.lastOK.Store(start.Unix())
	s.lastBytes.Store(n)
	s.Log.Info("backup written", "path", path, "bytes", n, "took", time.Since(start).Round(time.Millisecond))
	if err := s.rotate(); err != nil {
		s.Log.Error("old backups not deleted", "dir", s.Dir, "error", err)
	}
	return path, nil
}

// copies lists the copies in Dir, oldest first (their names sort by time).
func (s *Schedule) copies() ([]string, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && nameRe.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out, nil
}

func (s *Schedule) rotate() error {
	list, err := s.copies()
	if err != nil {
		return err
	}
	for len(list) > s.Keep {
		if err := os.Remove(filepath.Join(s.Dir, list[0])); err != nil {
			return err
		}
		s.Log.Info("old backup deleted", "path", filepath.Join(s.Dir, list[0]))
		list = list[1:]
	}
	return nil
}

// firstWait is the time until the first copy: Every after the newest copy
// there is, at least FirstDelay.
func (s *Schedule) firstWait() time.Duration {
	wait := s.FirstDelay
	list, _ := s.copies()
	if len(list) > 0 {
		name := list[len(list)-1]
		if t, err := time.Parse(nameTime, name[len("callgate-"):len(name)-len(".db")]); err == nil {
			wait = max(wait, min(t.Add(s.Every).Sub(s.Now()), s.Every))
		}
	}
	return wait
}

// removeStale deletes the temporary files of copies a crash interrupted.
func (s *Schedule) removeStale() {
	entries, _ := os.ReadDir(s.Dir)
	for _, e := range entries {
		if staleRe.MatchString(e.Name()) {
			p := filepath.Join(s.Dir, e.Name())
			if err := os.Remove(p); err == nil {
				s.Log.Info("unfinished backup deleted", "path", p)
			}
		}
	}
}

var staleRe = regexp.MustCompile(`^\.callgate-[0-9]{8}T[0-9]{6}Z\.db\.[0-9]+` + regexp.QuoteMeta(tmpSuffix) + `$`)

// Collectors are the schedule's metrics (none for a nil Schedule).
func (s *Schedule) Collectors() []prometheus.Collector {
	if s == nil {
		return nil
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_backup_total", Help: "Scheduled backups written.",
			ConstLabels: prometheus.Labels{"result": "ok"}}, func() float64 { return float64(s.ok.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_backup_total", Help: "Scheduled backups written.",
			ConstLabels: prometheus.Labels{"result": "error"}}, func() float64 { return float64(s.failed.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_backup_last_success_timestamp_seconds",
			Help: "When the last good scheduled backup started (0: none since start)."}, func() float64 { return float64(s.lastOK.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_backup_last_bytes",
			Help: "Size of the last good scheduled backup."}, func() float64 { return float64(s.lastBytes.Load()) }),
	}
}
