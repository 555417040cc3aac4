package recordings

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"callgate/media/record"
)

// janitorEvery is how often the janitor looks for recordings past
// retention: the retention is counted in days, an hour late is nothing.
const janitorEvery = time.Hour

// Sweep deletes recordings older than the retention (by modification
// time, i.e. when the call ended), skipping recordings in progress, and
// removes day/month/year directories left empty. It returns the paths
// deleted.
func (l *Library) Sweep(now time.Time) ([]string, error) {
	retention := time.Duration(l.retention.Load())
	deleted, err := sweep(l.cfg.Dir, retention, now)
	if l.arch != nil {
		deleted = append(deleted, l.arch.sweep(now.Add(-retention))...)
	}
	return deleted, err
}

func sweep(dir string, retention time.Duration, now time.Time) ([]string, error) {
	active := record.InProgress(dir)
	cutoff := now.Add(-retention)
	var deleted, dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a vanished file is not a reason to stop
		}
		if d.IsDir() {
			if d.Name() == record.MarkerDir {
				return filepath.SkipDir
			}
			if p != dir {
				dirs = append(dirs, p)
			}
			return nil
		}
		if !isRecording(d.Name()) || active[p] {
			return nil
		}
		info, err := d.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			return nil
		}
		if os.Remove(p) == nil {
			deleted = append(deleted, p)
		}
		return nil
	})
	// Deepest first, so a month goes once its days are gone.
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		_ = os.Remove(d) // fails, harmlessly, unless empty
	}
	return deleted, err
}

// RunJanitor deletes recordings past retention at once and then hourly,
// until ctx ends.
func (l *Library) RunJanitor(ctx context.Context) {
	for {
		if deleted, err := l.Sweep(time.Now()); err != nil {
			l.log.Warn("recording janitor", "error", err)
		} else if len(deleted) > 0 {
			l.log.Info("old recordings deleted", "count", len(deleted))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(janitorEvery):
		}
	}
}

// SetLimits changes how long recordings are kept and the free space they
// leave on the disk (a configuration reload). The next sweep and the next
// disk check use them; a shorter retention deletes at the next sweep,
// within janitorEvery.
func (l *Library) SetLimits(retention time.Duration, minFree uint64) {
	l.retention.Store(int64(retention))
	l.guard.SetMinFree(minFree)
}

// isRecording tells a recording's file (either form) from anything else
// in the directory, such as an encoding in progress.
func isRecording(name string) bool {
	return strings.HasSuffix(name, ".wav") || strings.HasSuffix(name, ".opus")
}
