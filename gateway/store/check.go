package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// MarkerName is the file written beside the database when it is first
// created. It tells a database that vanished or was emptied (refused) from
// a fresh install (created).
const MarkerName = ".callgate-db-initialized"

// ErrDamaged matches every *DamagedError.
var ErrDamaged = errors.New("database damaged")

// Damage kinds.
const (
	DamageCorrupt = "damaged"
	DamageEmpty   = "empty"
	DamageMissing = "missing"
)

// DamagedError says why callgate will not use the database as it is.
type DamagedError struct {
	Path string
	Kind string // DamageCorrupt, DamageEmpty or DamageMissing
	// Problems are the first problems found; Count is how many in all.
	Problems []string
	Count    int
	// Marker is the marker file's path when it shows a database existed.
	Marker string
}

// Is makes errors.Is(err, ErrDamaged) true.
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// Error says what is wrong in one line; cmd/callgate adds what to do.
func (e *DamagedError) Error() string {
	switch e.Kind {
	case DamageMissing:
		return fmt.Sprintf("database %s is missing, but %s shows one was created here: starting would silently begin with empty call history, a new link-signing key and no CRM outbox", e.Path, e.Marker)
	case DamageEmpty:
		return fmt.Sprintf("database %s is empty (0 bytes): starting would silently begin with empty call history, a new link-signing key and no CRM outbox", e.Path)
	}
	msg := fmt.Sprintf("database %s is damaged", e.Path)
	if len(e.Problems) > 0 {
		msg += ": " + e.Problems[0]
	}
	if e.Count > 1 {
		msg += fmt.Sprintf(" (and %d more problems)", e.Count-1)
	}
	return msg
}

// BucketStat counts the keys of one bucket (nested buckets are named
// parent/child).
type BucketStat struct {
	Name string
	Keys int
}

// Report is what a check found.
type Report struct {
	Path     string
	Size     int64
	PageSize int
	Pages    uint64 // pages the database uses (its high-water mark)
	TxID     uint64
	Schema   int
	Buckets  []BucketStat
	// Problems are the first problems found, ProblemCount how many in all;
	// any makes the database unsound. Warnings lose no data.
	Problems     []string
	ProblemCount int
	Warnings     []string
	DamagedPages int
}

// Sound says whether the check found no problem.
func (r *Report) Sound() bool { return r.ProblemCount == 0 }

// checkData walks a database image. It never panics.
func checkData(data []byte) (rep *Report, w *walker) {
	rep = &Report{Size: int64(len(data))}
	defer func() {
		if r := recover(); r != nil { // a bug here must not stop the daemon's start
			rep.Problems = append(rep.Problems, fmt.Sprintf("check failed: %v", r))
			rep.ProblemCount++
		}
	}()
	w, err := newWalker(data)
	if err != nil {
		rep.Problems, rep.ProblemCount = []string{err.Error()}, 1
		return rep, nil
	}
	w.walk()
	rep.PageSize, rep.Pages, rep.TxID, rep.Schema = w.ps, w.m.pgid, w.m.txid, w.schema
	rep.Problems, rep.ProblemCount, rep.Warnings, rep.DamagedPages = w.problems, w.problemCount, w.warnings, w.damagedPages
	for _, b := range w.buckets {
		rep.Buckets = append(rep.Buckets, *b)
	}
	sort.Slice(rep.Buckets, func(i, j int) bool { return rep.Buckets[i].Name < rep.Buckets[j].Name })
	return rep, w
}

// lockFile opens path and takes a flock on it without waiting, so a check
// never reads a file a running callgate is writing.
func lockFile(path string, exclusive bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (stop callgate first)", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// mapFile maps f read-only; the mapping covers exactly the file, and every
// read is bounds-checked against it.
func mapFile(f *os.File) ([]byte, func(), error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.Size() == 0 {
		return nil, func() {}, nil
	}
	if fi.Size() != int64(int(fi.Size())) {
		return nil, nil, fmt.Errorf("%s: too large to map", f.Name())
	}
	// MAP_POPULATE reads the file in at once: much cheaper than a page fault
	// for each page the walk touches.
	data, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		return nil, nil, fmt.Errorf("map %s: %w", f.Name(), err)
	}
	return data, func() { _ = syscall.Munmap(data) }, nil
}

var errCorruptPage = errors.New("bbolt failed on a corrupt page")

// isCorrupt says whether a bbolt error means the file's contents are bad.
func isCorrupt(err error) bool {
	return errors.Is(err, errCorruptPage) || errors.Is(err, bolterrors.ErrInvalid) ||
		errors.Is(err, bolterrors.ErrVersionMismatch) || errors.Is(err, bolterrors.ErrChecksum)
}

// guard runs fn, turning a panic (bbolt's on a corrupt page, or a memory
// fault on its map of a truncated file) into an error.
func guard(what string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %w: %v", what, errCorruptPage, r)
		}
	}()
	return fn()
}

// quickCheck checks the file at path structurally before bbolt maps it:
// both meta pages, every page reachable from the root and the freelist.
func quickCheck(path string) (*Report, error) {
	f, err := lockFile(path, false)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, unmap, err := mapFile(f)
	if err != nil {
		return nil, err
	}
	defer unmap()
	var rep *Report
	if err := guard("check "+path, func() error { rep, _ = checkData(data); return nil }); err != nil {
		return &Report{Path: path, Problems: []string{err.Error()}, ProblemCount: 1}, nil
	}
	rep.Path = path
	return rep, nil
}

// CheckFile checks the database at path thoroughly: the structural walk
// of Open, then (when that passes) bbolt's own consistency check. A missing,
// empty or locked file is an error.
func CheckFile(path string) (*Report, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		de := &DamagedError{Path: path, Kind: DamageMissing, Marker: filepath.Join(filepath.Dir(path), MarkerName)}
		if _, err := os.Stat(de.Marker); err == nil {
			return nil, de
		}
	}
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return nil, &DamagedError{Path: path, Kind: DamageEmpty}
	}
	rep, err := quickCheck(path)
	if err != nil || !rep.Sound() {
		return rep, err
	}
	err = guard("check "+path, func() error {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true, Timeout: 200 * time.Millisecond})
		if err != nil {
			return err
		}
		defer db.Close()
		return db.View(func(tx *bolt.Tx) error {
			for e := range tx.Check() {
				rep.ProblemCount++
				if len(rep.Problems) < maxProblemText {
					rep.Problems = append(rep.Problems, "bbolt check: "+e.Error())
				}
			}
			return nil
		})
	})
	if err != nil {
		rep.ProblemCount++
		rep.Problems = append(rep.Problems, err.Error())
	}
	return rep, nil
}

// Options change how Open treats a missing or empty database.
type Options struct {
	// Init accepts a missing or 0-byte database where the marker shows one
	// existed, starting a new empty one (`callgate run -init`).
	Init bool
}

// precheck refuses a database Open must not use: missing or empty where
// one existed, or structurally damaged.
func precheck(dir, path string, o Options) error {
	marker := filepath.Join(dir, MarkerName)
	_, merr := os.Stat(marker)
	hadDB := merr == nil
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if hadDB && !o.Init {
			return &DamagedError{Path: path, Kind: DamageMissing, Marker: marker}
		}
		return nil
	case err != nil:
		return fmt.Errorf("open %s: %w", path, err)
	case fi.Size() == 0:
		// Refused even without the marker: a database from before markers
		// existed may have been emptied too.
		if !o.Init {
			return &DamagedError{Path: path, Kind: DamageEmpty, Marker: marker}
		}
		return nil
	}
	rep, err := quickCheck(path)
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return fmt.Errorf("open %s: %w (is callgate already running with data_dir %s?)", path, ErrLocked, dir)
		}
		return err
	}
	if !rep.Sound() {
		return &DamagedError{Path: path, Kind: DamageCorrupt, Problems: rep.Problems, Count: rep.ProblemCount}
	}
	return nil
}

// writeMarker records that a database exists in dir, once.
func writeMarker(dir string) error {
	marker := filepath.Join(dir, MarkerName)
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	text := fmt.Sprintf("callgate created its database %s here on %s.\n"+
		"While this file exists, callgate refuses to start when that database is missing or empty\n"+
		"(restore a backup, or run `callgate run -init` to start a new one on purpose).\n",
		FileName, time.Now().UTC().Format(time.RFC3339))
	f, err := os.OpenFile(marker, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("write %s: %w", marker, err)
	}
	_, err = f.WriteString(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", marker, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
