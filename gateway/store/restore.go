package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrBadBackup matches VerifyBackup's refusals of a file's contents.
var ErrBadBackup = errors.New("not a usable callgate backup")

// KeptSuffix names the database a restore replaced, beside the new one.
const KeptSuffix = ".before-restore"

// VerifyBackup checks that the file at path is a sound callgate database
// this build can open: every page reachable, a schema version between 1 and
// SchemaVersion() (an older one is migrated when callgate starts on it).
// thorough adds bbolt's own consistency check, which reads every page once
// more.
func VerifyBackup(path string, thorough bool) (*Report, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("verify %s: not a regular file", path)
	}
	if fi.Size() == 0 {
		return nil, fmt.Errorf("verify %s: %w: the file is empty", path, ErrBadBackup)
	}
	var rep *Report
	if thorough {
		rep, err = CheckFile(path)
	} else {
		rep, err = quickCheck(path)
	}
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", path, err)
	}
	if !rep.Sound() {
		return rep, fmt.Errorf("verify %s: %w: it is not a sound bbolt database: %s", path, ErrBadBackup, rep.Problems[0])
	}
	switch {
	case rep.Schema < 1:
		return rep, fmt.Errorf("verify %s: %w: a bbolt file without a callgate schema version", path, ErrBadBackup)
	case rep.Schema > SchemaVersion():
		return rep, fmt.Errorf("verify %s: %w: schema version %d is newer than this callgate understands (%d): use the callgate that wrote it", path, ErrBadBackup, rep.Schema, SchemaVersion())
	}
	return rep, nil
}

// CopyFile writes a consistent copy of the database file at path to w,
// opening it read-only. It is for a stopped callgate: while one runs, its
// lock makes this fail with ErrLocked.
func CopyFile(path string, w io.Writer) (int64, error) {
	// Missing, empty and damaged files get the messages Open gives.
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("copy %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return 0, &DamagedError{Path: path, Kind: DamageEmpty}
	}
	rep, err := quickCheck(path)
	if err != nil {
		return 0, fmt.Errorf("copy %s: %w", path, err)
	}
	if !rep.Sound() {
		return 0, &DamagedError{Path: path, Kind: DamageCorrupt, Problems: rep.Problems, Count: rep.ProblemCount}
	}
	var n int64
	err = guard("copy "+path, func() error {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 200 * time.Millisecond})
		if errors.Is(err, bolterrors.ErrTimeout) {
			return fmt.Errorf("%s: %w", path, ErrLocked)
		}
		if err != nil {
			return err
		}
		defer db.Close()
		return db.View(func(tx *bolt.Tx) error {
			n, err = tx.WriteTo(w)
			return err
		})
	})
	if err != nil {
		return n, fmt.Errorf("copy %s: %w", path, err)
	}
	return n, nil
}

// RestoreReport says what Restore did.
type RestoreReport struct {
	Path   string // the restored database
	Kept   string // where the database it replaced was kept ("" if there was none)
	Schema int    // the backup's schema version
	Size   int64
}

// Restore puts the backup at src in place of the database in dataDir, for
// a stopped callgate: it verifies src thoroughly, copies it beside the
// database (synced, with the owner of the database or of dataDir), keeps
// the old database as callgate.db.before-restore (or, when that name is
// taken by an earlier restore, with the time appended) and renames the copy
// over it. The old file stays locked throughout, so a running callgate makes
// it fail with ErrLocked before anything changes.
func Restore(dataDir, src string, now time.Time) (*RestoreReport, error) {
	rep, err := VerifyBackup(src, true)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("restore: create data_dir: %w", err)
	}
	dst := filepath.Join(dataDir, FileName)
	owner, err := os.Stat(dataDir)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	old, err := os.Stat(dst)
	switch {
	case err == nil:
		owner = old
		// Held until the end: a callgate starting meanwhile waits on it.
		lock, err := lockFile(dst, true)
		if err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		defer lock.Close()
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("restore: %w", err)
	}
	tmp := dst + ".restore-tmp"
	if err := copyInto(tmp, src, owner); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("restore: %w", err)
	}
	if _, err := VerifyBackup(tmp, false); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("restore: the copy does not check out: %w", err)
	}
	rr := &RestoreReport{Path: dst, Schema: rep.Schema, Size: rep.Size}
	if old != nil {
		rr.Kept = dst + KeptSuffix
		if _, err := os.Lstat(rr.Kept); err == nil {
			rr.Kept += "-" + now.UTC().Format("20060102T150405Z")
		}
		// A hard link keeps the old file while the rename below replaces
		// callgate.db in one step: there is never a moment without one.
		if err := os.Link(dst, rr.Kept); err != nil {
			os.Remove(tmp)
			return nil, fmt.Errorf("restore: keep the old database: %w", err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("restore: put the backup in place: %w", err)
	}
	if err := syncDir(dataDir); err != nil {
		return rr, fmt.Errorf("restore: %w", err)
	}
	return rr, writeMarker(dataDir)
}

// copyInto copies src to a new file dst, synced, owned like owner.
func copyInto(dst, src string, owner os.FileInfo) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	// Restored as root, the file must still open for the service user.
	if st, ok := owner.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		if err := os.Chown(dst, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("give %s to the owner of the data: %w", dst, err)
		}
	}
	return nil
}
