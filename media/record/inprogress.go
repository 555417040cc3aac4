package record

import (
	"errors"
	"os"
	"path/filepath"
)

// MarkerDir is the directory under a recordings dir that holds markers of
// the recordings in progress, for crash repair; it holds no recordings.
const MarkerDir = ".active"

// InProgress returns the paths of the recordings under dir that are being
// written (or were, when a crash interrupted them): whoever deletes
// recordings must leave these alone.
func InProgress(dir string) map[string]bool {
	active := map[string]bool{}
	marks, err := os.ReadDir(filepath.Join(dir, MarkerDir))
	if err != nil {
		return active
	}
	for _, m := range marks {
		if rel, err := os.ReadFile(filepath.Join(dir, MarkerDir, m.Name())); err == nil {
			active[filepath.Join(dir, string(rel))] = true
		}
	}
	return active
}

// RepairActive repairs every recording a crash left in progress under dir
// and returns their paths.
func RepairActive(dir string) ([]string, error) {
	marks, err := os.ReadDir(filepath.Join(dir, MarkerDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var repaired []string
	for _, m := range marks {
		mp := filepath.Join(dir, MarkerDir, m.Name())
		rel, err := os.ReadFile(mp)
		if err == nil {
			p := filepath.Join(dir, filepath.Clean("/" + string(rel))[1:])
			if _, err := Repair(p); err == nil {
				repaired = append(repaired, p)
			}
		}
		os.Remove(mp)
	}
	return repaired, nil
}
