package backup

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"callgate/gateway/archive"
	"callgate/gateway/config"
	"callgate/gateway/store"
	"callgate/internal/aside"

	"github.com/prometheus/client_golang/prometheus"
)

// Source writes a consistent copy of the database (store.Store does).
type Source interface {
	Backup(w io.Writer) (int64, error)
}

// Remote keeps the copies in object storage (archive.Store).
type Remote interface {
	Upload(ctx context.Context, key, path, contentType string, meta map[string]string) error
	List(ctx context.Context, prefix string) ([]string, error)
	Remove(ctx context.Context, key string) error
}

// RemotePrefix is where the copies go in the bucket.
const RemotePrefix = "backups/"

// Schedule makes a copy of the database every Every into Dir and keeps the
// newest Keep. With Remote, each copy is checked in Dir, uploaded under
// RemotePrefix and removed from Dir; the newest Keep stay in the bucket.
type Schedule struct {
	Remote Remote
	Dir    string
	Every  time.Duration
	Keep   int
	// FirstDelay is the least time between start and the first copy, so a
	// start is not slowed by one.
	FirstDelay time.Duration
	Source     Source
	// Verify checks a written copy before it takes a copy's name.
	Verify func(path string) error
	Log    *slog.Logger
	Now    func() time.Time

	ok, failed atomic.Uint64
	lastErr    atomic.Pointer[string] // the last copy's failure; nil after a good one
	lastOK     atomic.Int64           // unix seconds of the last good copy
	lastBytes  atomic.Int64
}

// New is the schedule [backup] configures, or nil when there is none
// (backup.dir empty and the target not the archive).
func New(cfg *config.Config, src Source, log *slog.Logger) *Schedule {
	b := cfg.Backup
	s := &Schedule{Dir: b.Dir, Every: b.Every.D(), Keep: b.Keep, FirstDelay: time.Minute, Source: src,
		Verify: func(path string) error { _, err := store.VerifyBackup(path, false); return err },
		Log:    log.With("component", "backup"), Now: time.Now}
	if b.Target == config.BackupToArchive {
		st, err := archive.FromConfig(cfg.Archive)
		if err != nil { // the configuration was checked: not expected
			s.Log.Error("backups to the archive are off", "error", err)
			return nil
		}
		s.Remote = st
		if s.Dir == "" {
			s.Dir = filepath.Join(cfg.DataDir, "backup-staging")
		}
	}
	if s.Dir == "" {
		return nil
	}
	return s
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
		s.fail(err)
		return "", err
	}
	if s.Remote != nil {
		key := RemotePrefix + filepath.Base(path)
		err := s.Remote.Upload(ctx, key, path, "application/octet-stream", map[string]string{"bytes": strconv.FormatInt(n, 10)})
		_ = os.Remove(path) // checked and sent, or to be made again at the next try
		if err != nil {
			s.fail(err)
			return "", err
		}
		path = key
	}
	s.ok.Add(1)
	s.lastErr.Store(nil)
	s.lastOK.Store(start.Unix())
	s.lastBytes.Store(n)
	s.Log.Info("backup written", "path", path, "bytes", n, "took", time.Since(start).Round(time.Millisecond))
	if err := s.rotate(ctx); err != nil {
		s.Log.Error("old backups not deleted", "dir", s.Dir, "error", err)
	}
	return path, nil
}

func (s *Schedule) fail(err error) {
	s.failed.Add(1)
	msg := err.Error()
	s.lastErr.Store(&msg)
}

// Health is nil while scheduled copies succeed (or there are none), and
// the last copy's failure otherwise, for /readyz: a failed backup does not
// stop calls, but someone should know.
func (s *Schedule) Health() error {
	if s == nil {
		return nil
	}
	if msg := s.lastErr.Load(); msg != nil {
		return fmt.Errorf("the last scheduled backup failed: %s", *msg)
	}
	return nil
}

// copies lists the copies (in Dir, or in the bucket under RemotePrefix),
// oldest first: their names sort by time.
func (s *Schedule) copies(ctx context.Context) ([]string, error) {
	var names []string
	if s.Remote != nil {
		keys, err := s.Remote.List(ctx, RemotePrefix)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			names = append(names, strings.TrimPrefix(k, RemotePrefix))
		}
	} else {
		entries, err := os.ReadDir(s.Dir)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.Type().IsRegular() {
				names = append(names, e.Name())
			}
		}
	}
	var out []string
	for _, n := range names {
		if nameRe.MatchString(n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (s *Schedule) rotate(ctx context.Context) error {
	list, err := s.copies(ctx)
	if err != nil {
		return err
	}
	for len(list) > s.Keep {
		where := filepath.Join(s.Dir, list[0])
		if s.Remote != nil {
			where = RemotePrefix + list[0]
			err = s.Remote.Remove(ctx, where)
		} else {
			err = os.Remove(where)
		}
		if err != nil {
			return err
		}
		s.Log.Info("old backup deleted", "path", where)
		list = list[1:]
	}
	return nil
}

// firstWait is the time until the first copy: Every after the newest copy
// there is, at least FirstDelay.
func (s *Schedule) firstWait() time.Duration {
	wait := s.FirstDelay
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	list, _ := s.copies(ctx)
	cancel()
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
