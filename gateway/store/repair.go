package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrSound means Repair found nothing to repair.
var ErrSound = errors.New("the database is sound: nothing to repair")

// RepairReport says what Repair saved and what was lost.
type RepairReport struct {
	Path    string // the new database, at the damaged one's path
	Damaged string // where the damaged file was kept
	// Before is the check of the damaged file: its problems are what was
	// lost (every key on a damaged page, and below a damaged branch page).
	Before    *Report
	Saved     []BucketStat // keys copied, per bucket
	SavedKeys int
	// Orphans counts intact leaf pages cut off from their bucket; Recovered
	// the keys on them put back where their shape shows they belong (call
	// records, meta entries) and not already present.
	Orphans, Recovered int
}

// repairBatch is how many keys one write transaction copies.
const repairBatch = 20000

// Repair copies everything readable from the damaged database at path to a
// new file, bucket by bucket and key by key, skipping damaged pages; then it
// keeps the damaged file as path.damaged-<UTC time> and puts the copy in its
// place. A sound database is left alone (ErrSound).
func Repair(path string, now time.Time) (*RepairReport, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("repair %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return nil, fmt.Errorf("repair %s: the file is empty, nothing can be saved: restore a backup, or start a new database with `callgate run -init`", path)
	}
	f, err := lockFile(path, true)
	if err != nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	defer f.Close()
	data, unmap, err := mapFile(f)
	if err != nil {
		return nil, err
	}
	defer unmap()
	var before *Report
	var w *walker
	if err := guard("check "+path, func() error { before, w = checkData(data); return nil }); err != nil {
		return nil, err
	}
	before.Path = path
	rr := &RepairReport{Path: path, Before: before}
	if before.Sound() {
		return rr, ErrSound
	}
	if w == nil {
		return rr, fmt.Errorf("repair %s: nothing can be read (%s): restore a backup", path, before.Problems[0])
	}
	tmp := path + ".repair-tmp"
	_ = os.Remove(tmp)
	saved, err := copyReadable(data, tmp, rr)
	if err != nil {
		os.Remove(tmp)
		return rr, fmt.Errorf("repair %s: %w", path, err)
	}
	// The copy gets the damaged file's owner and mode, so a repair run as
	// root leaves a database the service user can still open.
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		_ = os.Chown(tmp, int(st.Uid), int(st.Gid))
	}
	_ = os.Chmod(tmp, fi.Mode().Perm())
	if rep, err := quickCheck(tmp); err != nil || !rep.Sound() {
		os.Remove(tmp)
		return rr, fmt.Errorf("repair %s: the copy does not check out (%v %v)", path, err, rep)
	}
	for _, b := range saved {
		rr.Saved = append(rr.Saved, *b)
		rr.SavedKeys += b.Keys
	}
	sort.Slice(rr.Saved, func(i, j int) bool { return rr.Saved[i].Name < rr.Saved[j].Name })
	rr.Damaged = path + ".damaged-" + now.UTC().Format("20060102T150405Z")
	if err := os.Rename(path, rr.Damaged); err != nil {
		os.Remove(tmp)
		return rr, fmt.Errorf("repair: keep the damaged file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return rr, fmt.Errorf("repair: put the copy in place (it is at %s, the damaged file at %s): %w", tmp, rr.Damaged, err)
	}
	return rr, syncDir(filepath.Dir(path))
}

// copyReadable walks data and writes every readable bucket and key to a new
// database at dst.
func copyReadable(data []byte, dst string, rr *RepairReport) (map[string]*BucketStat, error) {
	out, err := bolt.Open(dst, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true})
	if err != nil {
		return nil, err
	}
	defer out.Close()
	w, err := newWalker(data)
	if err != nil {
		return nil, err
	}
	var (
		tx      *bolt.Tx
		cache   = map[string]*bolt.Bucket{}
		n       int
		copyErr error
		saved   = map[string]*BucketStat{}
	)
	begin := func() {
		tx, copyErr = out.Begin(true)
		clear(cache)
		n = 0
	}
	bucket := func(path [][]byte) *bolt.Bucket {
		name := pathName(path)
		if b := cache[name]; b != nil {
			return b
		}
		b, err := tx.CreateBucketIfNotExists(path[0])
		for _, p := range path[1:] {
			if err != nil {
				break
			}
			b, err = b.CreateBucketIfNotExists(p)
		}
		if err != nil {
			copyErr = fmt.Errorf("create bucket %s: %w", name, err)
			return nil
		}
		b.FillPercent = 0.9 // keys arrive in order
		cache[name] = b
		if saved[name] == nil {
			saved[name] = &BucketStat{Name: name}
		}
		return b
	}
	w.onBucket = func(path [][]byte, seq uint64) {
		if copyErr != nil {
			return
		}
		if b := bucket(path); b != nil && seq > b.Sequence() {
			copyErr = b.SetSequence(seq)
		}
	}
	put := func(path [][]byte, k, v []byte, ifAbsent bool) bool {
		if copyErr != nil {
			return false
		}
		b := bucket(path)
		if b == nil || (ifAbsent && b.Get(k) != nil) {
			return false
		}
		if copyErr = b.Put(k, v); copyErr != nil {
			return false
		}
		saved[pathName(path)].Keys++
		if n++; n >= repairBatch {
			if copyErr = tx.Commit(); copyErr == nil {
				begin()
			}
		}
		return true
	}
	w.onKey = func(path [][]byte, k, v []byte) { put(path, k, v, false) }
	begin()
	if copyErr != nil {
		return nil, copyErr
	}
	err = guard("read damaged file", func() error {
		w.walk()
		rr.Orphans = w.orphans(func(k, v []byte) {
			if b := orphanBucket(k, v); b != nil && put([][]byte{b}, k, v, true) {
				rr.Recovered++
			}
		})
		return nil
	})
	if err != nil && copyErr == nil {
		copyErr = err
	}
	if copyErr != nil {
		if tx != nil {
			_ = tx.Rollback()
		}
		return nil, copyErr
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	if err := out.Sync(); err != nil {
		return nil, err
	}
	return saved, out.Close()
}

// orphanBucket says which bucket a key from an orphaned page belongs to, by
// the shape callgate gives its keys; nil when that is not certain.
func orphanBucket(k, v []byte) []byte {
	// A call record: 8-byte start time + id, the JSON starting with that id.
	if len(k) > 8 && bytes.HasPrefix(v, []byte(`{"id":"`)) && bytes.HasPrefix(v[7:], k[8:]) &&
		len(v) > 7+len(k)-8 && v[7+len(k)-8] == '"' {
		return BucketCalls
	}
	if bytes.Equal(k, keySchema) {
		return BucketMeta
	}
	for _, p := range []string{"secret:", "once:", "state:"} {
		if bytes.HasPrefix(k, []byte(p)) {
			return BucketMeta
		}
	}
	return nil
}
