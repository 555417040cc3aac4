package recordings

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"callgate/gateway/archive"
	"callgate/media/record"
)

// ObjectStore is the archive's bucket (archive.Store).
type ObjectStore interface {
	Upload(ctx context.Context, key, path, contentType string, meta map[string]string) error
	Open(ctx context.Context, key string) (*archive.Object, error)
	Remove(ctx context.Context, key string) error
	Check(ctx context.Context) error
}

// KV is a bucket of the database seen as a map (store.Bucket): the archive
// queue and the index of what is archived survive restarts there.
type KV interface {
	Get(key string) ([]byte, error)
	Each(fn func(key string, value []byte) error) error
	Apply(changes map[string][]byte) error
}

// ArchiveConfig turns the archive on.
type ArchiveConfig struct {
	Store ObjectStore
	// Queue holds the recordings waiting to be uploaded, Index where each
	// archived one is; both keyed by the name the call record keeps.
	Queue, Index KV
	// After is how long a recording stays local before it is uploaded.
	After time.Duration
	// KeepLocal keeps the local copy after the upload.
	KeepLocal bool
	// Every is how often the queue is looked at (0: every 2 s).
	Every time.Duration
	// CheckEvery is how often the bucket is looked at while nothing waits
	// for it (0: every 5 minutes).
	CheckEvery time.Duration
}

// queued is a recording waiting for the archive.
type queued struct {
	At   time.Time         `json:"at"`
	Meta map[string]string `json:"meta,omitempty"`
}

// archived is where an archived recording is.
type archived struct {
	Key     string    `json:"key"`
	Size    int64     `json:"size"`
	Ended   time.Time `json:"ended"`
	Type    string    `json:"type"`
	Removed bool      `json:"removed,omitempty"` // the local copy is gone
}

// archiver uploads complete recordings through a durable queue.
type archiver struct {
	cfg     ArchiveConfig
	lib     *Library
	queueMu sync.Mutex // orders writes to the queue
	// retry holds when each failed name may be tried again.
	mu       sync.Mutex
	retry    map[string]time.Time
	backoff  map[string]time.Duration
	lastErr  atomic.Pointer[string]
	failures atomic.Int64
	depth    atomic.Int64
	oldest   atomic.Int64 // unix ns of the oldest queued, 0 when none
}

// Archive turns the archive on: from now on every complete recording is
// queued for upload. It must be called before RunArchive and before any
// recording closes.
func (l *Library) Archive(cfg ArchiveConfig) {
	if cfg.Every <= 0 {
		cfg.Every = 2 * time.Second
	}
	if cfg.CheckEvery <= 0 {
		cfg.CheckEvery = 5 * time.Minute
	}
	l.arch = &archiver{cfg: cfg, lib: l, retry: map[string]time.Time{}, backoff: map[string]time.Duration{}}
}

// queue records that name (as the call record keeps it) is to be
// archived once its final form exists; it survives restarts.
func (a *archiver) queue(name string, meta map[string]string) {
	a.put(name, meta, false)
}

// put queues name; a leftover found by the start-up scan (ifAbsent) never
// replaces what a closing leg queued with its call's metadata meanwhile.
func (a *archiver) put(name string, meta map[string]string, ifAbsent bool) {
	a.queueMu.Lock()
	defer a.queueMu.Unlock()
	if ifAbsent {
		if v, err := a.cfg.Queue.Get(name); err != nil || v != nil {
			return
		}
	}
	b, _ := json.Marshal(queued{At: time.Now(), Meta: meta})
	if err := a.cfg.Queue.Apply(map[string][]byte{name: b}); err != nil {
		a.lib.log.Error("recording not queued for the archive; queued at the next start", "recording", name, "error", err)
	}
}

// RunArchive uploads queued recordings until ctx ends: each once it is in
// its final form (Ogg Opus after compression, or WAV) and older than
// After, retried with backoff while the storage fails; the local copy
// goes only after a verified upload.
func (l *Library) RunArchive(ctx context.Context) {
	a := l.arch
	if a == nil {
		return
	}
	a.requeueLeftovers()
	t := time.NewTicker(a.cfg.Every)
	defer t.Stop()
	var checked time.Time
	for {
		// With nothing to upload, the bucket is still looked at now and
		// then, so a wrong key or a missing bucket shows from the start
		// rather than at the first recording.
		if a.depth.Load() == 0 && time.Since(checked) >= a.cfg.CheckEvery {
			a.check(ctx)
			checked = time.Now()
		}
		a.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// requeueLeftovers queues local recordings that are neither archived nor
// queued (made while the archive was off, or queued by a write that
// failed); a WAV still to be compressed goes once it is.
func (a *archiver) requeueLeftovers() {
	known := map[string]bool{}
	for _, kv := range []KV{a.cfg.Queue, a.cfg.Index} {
		_ = kv.Each(func(k string, _ []byte) error { known[k] = true; return nil })
	}
	dir := a.lib.cfg.Dir
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.IsDir() && info.Name() == record.MarkerDir {
			return filepath.SkipDir // markers of recordings in progress, not recordings
		}
		if err != nil || info.IsDir() || !isRecording(info.Name()) {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		name := strings.TrimSuffix(strings.TrimSuffix(rel, ".opus"), ".wav") + ".wav"
		if known[name] {
			return nil
		}
		a.put(name, nil, true)
		return nil
	})
}

// pass looks at the queue once.
func (a *archiver) pass(ctx context.Context) {
	type item struct {
		name string
		q    queued
	}
	var items []item
	_ = a.cfg.Queue.Each(func(k string, v []byte) error {
		var q queued
		_ = json.Unmarshal(v, &q)
		items = append(items, item{k, q})
		return nil
	})
	a.depth.Store(int64(len(items)))
	var oldest int64
	for _, it := range items {
		if n := it.q.At.UnixNano(); oldest == 0 || n < oldest {
			oldest = n
		}
	}
	a.oldest.Store(oldest)
	// The recordings being written, read once a pass rather than per item.
	var active map[string]bool
	if a.lib.cfg.Format != FormatOpus && len(items) > 0 {
		active = record.InProgress(a.lib.cfg.Dir)
	}
	for _, it := range items {
		if ctx.Err() != nil {
			return
		}
		a.mu.Lock()
		wait := a.retry[it.name]
		a.mu.Unlock()
		if time.Now().Before(wait) {
			continue
		}
		if err := a.upload(ctx, it.name, it.q.Meta, active); err != nil {
			if errors.Is(err, errNotReady) {
				continue
			}
			// The rest wait for the next pass: while the storage is
			// down, each pass costs one refused request, not one per
			// recording queued.
			a.failed(it.name, err)
			return
		}
	}
}

var errNotReady = errors.New("not in its final form yet")

// uploadTimeout bounds one upload: a storage that stops answering in the
// middle of a body is retried like one that refuses.
const uploadTimeout = 10 * time.Minute

// upload archives one recording, if it is ready.
func (a *archiver) upload(ctx context.Context, name string, meta map[string]string, active map[string]bool) error {
	dir := a.lib.cfg.Dir
	wav := filepath.Join(dir, name)
	ogg := strings.TrimSuffix(wav, ".wav") + ".opus"
	path, typ := wav, "audio/wav"
	if _, err := os.Stat(wav); err == nil {
		if (a.lib.cfg.Format == FormatOpus && !a.lib.enc.keptAsWAV(wav)) || active[wav] {
			return errNotReady
		}
	} else {
		path, typ = ogg, "audio/ogg; codecs=opus"
	}
	st, err := os.Stat(path)
	if os.IsNotExist(err) {
		// Deleted by retention before it was archived: nothing to do.
		return a.cfg.Queue.Apply(map[string][]byte{name: nil})
	}
	if err != nil {
		return err
	}
	if time.Since(st.ModTime()) < a.cfg.After {
		return errNotReady
	}
	key := strings.TrimPrefix(filepath.ToSlash(strings.TrimPrefix(path, dir)), "/")
	uctx, cancel := context.WithTimeout(ctx, uploadTimeout)
	err = a.cfg.Store.Upload(uctx, key, path, typ, meta)
	cancel()
	if err != nil {
		return err
	}
	rec, _ := json.Marshal(archived{Key: key, Size: st.Size(), Ended: st.ModTime(), Type: typ, Removed: !a.cfg.KeepLocal})
	if err := a.cfg.Index.Apply(map[string][]byte{name: rec}); err != nil {
		return fmt.Errorf("archive index: %w", err)
	}
	if !a.cfg.KeepLocal {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			a.lib.log.Warn("archived recording's local copy not removed", "recording", name, "error", err)
		}
	}
	if err := a.cfg.Queue.Apply(map[string][]byte{name: nil}); err != nil {
		return fmt.Errorf("archive queue: %w", err)
	}
	// The storage works: what waited for it goes now, not at the end of
	// each one's backoff.
	a.mu.Lock()
	clear(a.retry)
	clear(a.backoff)
	a.mu.Unlock()
	a.lastErr.Store(nil)
	a.lib.usage.moved.Store(true)
	a.lib.log.Debug("recording archived", "recording", name, "key", key, "bytes", st.Size())
	return nil
}

// failed schedules the next try of name: 2 s, doubling, at most a minute,
// so the queue drains within a minute of the storage coming back.
func (a *archiver) failed(name string, err error) {
	a.failures.Add(1)
	msg := err.Error()
	// Some storages answer an upload to a missing bucket with a bare
	// InternalError: when the bucket itself cannot be reached, the
	// bucket check's answer names the cause.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if cerr := a.cfg.Store.Check(ctx); cerr != nil {
		msg = cerr.Error()
	}
	cancel()
	a.lastErr.Store(&msg)
	a.mu.Lock()
	first := a.backoff[name] == 0
	d := min(max(2*a.backoff[name], 2*time.Second), time.Minute)
	a.backoff[name], a.retry[name] = d, time.Now().Add(d)
	a.mu.Unlock()
	// Once per recording at warning level: its retries are counted
	// (callgate_archive_failures_total) and shown on the admin page.
	log := a.lib.log.Debug
	if first {
		log = a.lib.log.Warn
	}
	log("recording not archived yet; kept locally and retried", "recording", name, "retry_in", d, "error", msg)
}

// check looks at the bucket: its refusal is the archive's error until an
// upload or a later check succeeds.
func (a *archiver) check(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.cfg.Store.Check(ctx); err != nil {
		if ctx.Err() == nil || errors.Is(err, context.DeadlineExceeded) {
			msg := err.Error()
			a.lastErr.Store(&msg)
			a.lib.log.Error("the archive's bucket cannot be reached; recordings stay on the local disk until it can", "error", err)
		}
		return
	}
	a.lastErr.Store(nil)
}

// ArchiveHealth is nil while the archive works (or is off), and the
// storage's last refusal while uploads fail: recordings then wait on the
// local disk.
func (l *Library) ArchiveHealth() error {
	if l.arch == nil {
		return nil
	}
	if msg := l.arch.lastErr.Load(); msg != nil {
		return fmt.Errorf("%d recordings waiting for the archive: %s", l.arch.depth.Load(), *msg)
	}
	return nil
}

// lookup is where an archived recording is (ok false: not archived).
func (a *archiver) lookup(name string) (archived, bool) {
	var out archived
	v, err := a.cfg.Index.Get(name)
	if err != nil || v == nil || json.Unmarshal(v, &out) != nil {
		return archived{}, false
	}
	return out, true
}

// open opens an archived recording (fs.ErrNotExist when the archive does
// not have it).
func (a *archiver) open(name string) (*File, error) {
	at, ok := a.lookup(name)
	if !ok {
		return nil, fmt.Errorf("open recording: %w", fs.ErrNotExist)
	}
	// The object is read while the client plays or downloads it, as long
	// as that takes: the request ends when the file is closed.
	ctx, cancel := context.WithCancel(context.Background())
	o, err := a.cfg.Store.Open(ctx, at.Key)
	if err != nil {
		cancel()
		if errors.Is(err, archive.ErrNotFound) {
			return nil, fmt.Errorf("open recording: %w: %w", fs.ErrNotExist, err)
		}
		return nil, err
	}
	return &File{ReadSeekCloser: cancelOnClose{o, cancel}, Name: path.Base(at.Key), Type: at.Type, Size: o.Size, ModTime: at.Ended}, nil
}

// cancelOnClose ends an archived object's request when it is closed.
type cancelOnClose struct {
	*archive.Object
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error { err := c.Object.Close(); c.cancel(); return err }

// sweep deletes archived recordings whose call ended before cutoff and
// returns their names.
func (a *archiver) sweep(cutoff time.Time) []string {
	var old []string
	keys := map[string]string{}
	_ = a.cfg.Index.Each(func(k string, v []byte) error {
		var at archived
		if json.Unmarshal(v, &at) == nil && at.Ended.Before(cutoff) {
			old = append(old, k)
			keys[k] = at.Key
		}
		return nil
	})
	var gone []string
	for _, name := range old {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := a.cfg.Store.Remove(ctx, keys[name])
		cancel()
		if err != nil {
			a.lib.log.Warn("archived recording past retention not deleted yet", "recording", name, "error", err)
			continue
		}
		if err := a.cfg.Index.Apply(map[string][]byte{name: nil}); err == nil {
			gone = append(gone, name)
		}
	}
	return gone
}
