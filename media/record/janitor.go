package record

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Sweep deletes recordings older than retention under dir (by modification
// time, i.e. when the call ended), skipping recordings in progress, and
// removes day/month/year directories left empty. It returns the paths
// deleted.
func Sweep(dir string, retention time.Duration, now time.Time) ([]string, error) {
	active := map[string]bool{}
	if marks, err := os.ReadDir(filepath.Join(dir, activeDir)); err == nil {
		for _, m := range marks {
			if rel, err := os.ReadFile(filepath.Join(dir, activeDir, m.Name())); err == nil {
				active[filepath.Join(dir, string(rel))] = true
			}
		}
	}
	cutoff := now.Add(-retention)
	var deleted, dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a vanished file is not a reason to stop
		}
		if d.IsDir() {
			if d.Name() == activeDir {
				return filepath.SkipDir
			}
			if p != dir {
				dirs = append(dirs, p)
			}
			return nil
		}
		if !strings.HasSuffix(d.Name(), ".wav") || active[p] {
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
