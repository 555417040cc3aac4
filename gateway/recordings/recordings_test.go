package recordings

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"callgate/media/record"

	"github.com/prometheus/client_golang/prometheus"
)

func TestNameLayout(t *testing.T) {
	at := time.Date(2026, 3, 7, 23, 59, 0, 0, time.UTC)
	if got, want := Name("abc@host", "2", at), filepath.Join("2026", "03", "07", "abc@host-2.wav"); got != want {
		t.Fatalf("name %q, want %q", got, want)
	}
	// A Call-ID is network input: it must not leave the day directory.
	for _, id := range []string{"../../etc/passwd", "a/b", `a\b`, "..", ""} {
		n := Name(id, "1", at)
		if !filepath.IsLocal(n) || filepath.Dir(n) != filepath.Join("2026", "03", "07") {
			t.Fatalf("call id %q named %q", id, n)
		}
	}
}

func TestStartNamesWhatOpenFinds(t *testing.T) {
	dir := t.TempDir()
	l := New(Config{Enabled: true, Dir: dir})
	at := time.Now()
	rec, err := l.Start("call-1", 2, at)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Name != Name("call-1", "2", at) || rec.Path() != filepath.Join(dir, rec.Name) {
		t.Fatalf("name %q path %q", rec.Name, rec.Path())
	}
	size, err := rec.Close()
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.Open(rec.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	if f.Size != size || int64(len(b)) != size || f.Name != "call-1-2.wav" || f.Type != "audio/wav" || !strings.HasPrefix(string(b), "RIFF") {
		t.Fatalf("opened %+v, %d bytes", f, len(b))
	}
}

func TestOpenRefusesNamesOutsideAndReportsDeleted(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(filepath.Dir(dir), "secret.wav")
	os.WriteFile(secret, []byte("x"), 0o600)
	t.Cleanup(func() { os.Remove(secret) })
	l := New(Config{Dir: dir})
	for _, name := range []string{"../secret.wav", secret, "", "a/../../secret.wav"} {
		if _, err := l.Open(name); !errors.Is(err, ErrUnknown) {
			t.Fatalf("%q: %v", name, err)
		}
	}
	if _, err := l.Open("2026/01/01/gone-1.wav"); !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrUnknown) {
		t.Fatalf("deleted recording: %v", err)
	}
}

// recordAt makes a finished recording of leg 1 of id whose call ended at
// ended.
func recordAt(t *testing.T, l *Library, id string, ended time.Time) string {
	t.Helper()
	rec, err := l.Start(id, 1, ended)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(rec.Path(), ended, ended); err != nil {
		t.Fatal(err)
	}
	return rec.Path()
}

func TestRetentionDeletesOnlyOlder(t *testing.T) {
	dir := t.TempDir()
	const retention = 30 * 24 * time.Hour
	l := New(Config{Dir: dir, Retention: retention})
	now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.Local)
	old := recordAt(t, l, "old", now.Add(-retention-24*time.Hour))
	older := recordAt(t, l, "older", now.Add(-retention-time.Second)) // a second past: deleted
	edge := recordAt(t, l, "edge", now.Add(-retention))               // exactly the retention: kept
	fresh := recordAt(t, l, "fresh", now.Add(-time.Hour))
	// In progress since long ago (a long call, or one a crash left): kept.
	active, err := l.Start("active", 1, now.Add(-retention-48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer active.Close()
	os.Chtimes(active.Path(), now.Add(-retention-48*time.Hour), now.Add(-retention-48*time.Hour))
	// Not a recording: kept whatever its age.
	other := filepath.Join(dir, "notes.txt")
	os.WriteFile(other, []byte("x"), 0o600)
	os.Chtimes(other, now.AddDate(-5, 0, 0), now.AddDate(-5, 0, 0))

	deleted, err := l.Sweep(now)
	slices.Sort(deleted)
	if want := []string{old, older}; err != nil || !slices.Equal(deleted, want) {
		t.Fatalf("deleted %v, %v; want %v", deleted, err, want)
	}
	for _, p := range []string{edge, fresh, active.Path(), other} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s deleted", p)
		}
	}
	// The old call's day had nothing else: its day and month are gone.
	if _, err := os.Stat(filepath.Dir(old)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("empty day directory kept")
	}
	if _, err := os.Stat(filepath.Join(dir, record.MarkerDir)); err != nil {
		t.Fatal("markers of recordings in progress removed")
	}
	if again, _ := l.Sweep(now); len(again) != 0 {
		t.Fatalf("second sweep deleted %v", again)
	}
}

func TestJanitorSweepsAtOnceAndStops(t *testing.T) {
	dir := t.TempDir()
	l := New(Config{Dir: dir, Retention: time.Hour})
	old := recordAt(t, l, "old", time.Now().Add(-2*time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.RunJanitor(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for _, err := os.Stat(old); err == nil; _, err = os.Stat(old) {
		if time.Now().After(deadline) {
			t.Fatal("the janitor did not sweep at start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the janitor did not stop")
	}
}

// fakeDisk is a filesystem whose free space the test sets; dirs that do
// not exist fail as statfs does.
type fakeDisk struct {
	free  atomic.Uint64
	calls atomic.Int64
}

func (d *fakeDisk) statfs(dir string) (uint64, error) {
	d.calls.Add(1)
	if _, err := os.Stat(dir); err != nil {
		return 0, err
	}
	return d.free.Load(), nil
}

func TestDiskGuardRefusesBelowMinFree(t *testing.T) {
	dir := t.TempDir()
	disk := &fakeDisk{}
	l := New(Config{Enabled: true, Dir: dir, MinFree: 1 << 20})
	l.guard.free = disk.statfs
	for _, c := range []struct {
		free uint64
		low  bool
	}{{1<<20 - 1, true}, {1 << 20, false}, {1 << 30, false}, {0, true}} {
		disk.free.Store(c.free)
		if l.guard.Low() != c.low {
			t.Fatalf("free %d: low %v", c.free, !c.low)
		}
		rec, err := l.Start("c", 1, time.Now())
		if c.low {
			if !errors.Is(err, record.ErrLowDisk) {
				t.Fatalf("free %d below min_free: started (%v)", c.free, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("free %d: %v", c.free, err)
		}
		rec.Close()
		os.Remove(rec.Path())
	}
	if n := l.Recorder().Skipped.Load(); n != 2 {
		t.Fatalf("skipped %d, want 2", n)
	}
	// A disk that cannot be read is not low: recordings go on.
	disk.free.Store(0)
	if (&DiskGuard{Dir: filepath.Join(dir, "missing"), MinFree: 1 << 20, free: disk.statfs}).Low() {
		t.Fatal("an unreadable disk silenced recordings")
	}
}

func TestDiskGuardOffAsksNothing(t *testing.T) {
	disk := &fakeDisk{}
	g := &DiskGuard{Dir: t.TempDir(), free: disk.statfs}
	if g.Low() || disk.calls.Load() != 0 {
		t.Fatalf("min_free 0: low %v after %d statfs", g.Low(), disk.calls.Load())
	}
}

func TestFreeBytesOfADirNotMadeYet(t *testing.T) {
	base := t.TempDir()
	disk := &fakeDisk{}
	disk.free.Store(12345)
	g := &DiskGuard{Dir: filepath.Join(base, "recordings", "not", "yet"), free: disk.statfs}
	if got := g.FreeBytes(); got != 12345 {
		t.Fatalf("free bytes %d", got)
	}
	if got := (&DiskGuard{Dir: base}).FreeBytes(); got == 0 {
		t.Fatal("real statfs read no free space")
	}
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	if u := New(Config{Dir: dir}).Usage(); u.Enabled || u.Files != 0 || u.Week != nil || u.Archive != nil {
		t.Fatalf("disabled: %+v", u)
	}
	l := New(Config{Enabled: true, Dir: filepath.Join(dir, "rec")})
	disk := &fakeDisk{}
	disk.free.Store(1000)
	l.guard.free = disk.statfs
	// Before the first recording the directory does not exist.
	if u := l.Usage(); u.Files != 0 || u.FreeBytes != 1000 || !u.Enabled || u.Dir != filepath.Join(dir, "rec") {
		t.Fatalf("empty: %+v", u)
	}
	l.usage = usageCache{}
	p := recordAt(t, l, "a", time.Now())
	st, _ := os.Stat(p)
	if u := l.Usage(); u.Files != 1 || u.Bytes != st.Size() {
		t.Fatalf("one recording: %+v", u)
	}
	// Within the minute the count is cached, the free space is not.
	recordAt(t, l, "b", time.Now())
	disk.free.Store(10)
	if u := l.Usage(); u.Files != 1 || u.FreeBytes != 10 {
		t.Fatalf("cached: %+v", u)
	}
	l.usage.at = time.Now().Add(-usageEvery)
	if u := l.Usage(); u.Files != 2 {
		t.Fatalf("after a minute: %+v", u)
	}
	// A recording compressed or archived meanwhile brings the count
	// forward.
	recordAt(t, l, "c", time.Now())
	l.usage.at = time.Now().Add(-usageMoved)
	if u := l.Usage(); u.Files != 2 {
		t.Fatalf("nothing moved, within the minute: %+v", u)
	}
	l.usage.moved.Store(true)
	if u := l.Usage(); u.Files != 3 {
		t.Fatalf("a recording moved: %+v", u)
	}
}

// The last week's recordings by day, and how long the disk lasts at the
// rate they came: calls of today and yesterday count, a call of ten days
// ago does not; without growth there is no forecast.
func TestUsageWeekAndDaysLeft(t *testing.T) {
	l := New(Config{Enabled: true, Dir: t.TempDir(), MinFree: 1000})
	disk := &fakeDisk{}
	disk.free.Store(1_000_000)
	l.guard.free = disk.statfs
	if u := l.Usage(); u.DaysLeft != 0 || len(u.Week) != 7 || u.MinFree != 1000 {
		t.Fatalf("no recordings: %+v", u)
	}
	now := time.Now()
	size := func(p string) int64 { st, _ := os.Stat(p); return st.Size() }
	today := size(recordAt(t, l, "a", now)) + size(recordAt(t, l, "b", now))
	yesterday := size(recordAt(t, l, "c", now.AddDate(0, 0, -1)))
	recordAt(t, l, "old", now.AddDate(0, 0, -10))
	l.usage.at = time.Time{}
	u := l.Usage()
	if u.Week[6].Day != now.Format(time.DateOnly) || u.Week[6].Bytes != today || u.Week[5].Bytes != yesterday || u.Week[0].Bytes != 0 {
		t.Fatalf("the week: %+v", u.Week)
	}
	want := float64(1_000_000-1000) / (float64(today+yesterday) / 7)
	if math.Abs(u.DaysLeft-want) > 0.01 {
		t.Fatalf("days left %.2f, want %.2f", u.DaysLeft, want)
	}
	// A recording in progress is one file, whatever marks it in progress.
	live, err := l.Start("live", 1, now)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	l.usage.at = time.Time{}
	if u := l.Usage(); u.Files != 5 {
		t.Fatalf("%d files with one in progress, want 5", u.Files)
	}
}

func TestLinks(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := &Links{Key: []byte("k"), TTL: time.Hour, BaseURL: "https://callgate.example.ru/", Now: func() time.Time { return now }}
	link, exp := l.Link("a b/c-1")
	if !exp.Equal(now.Add(time.Hour)) {
		t.Fatalf("expires %v", exp)
	}
	u, err := url.Parse(link)
	if err != nil || u.Host != "callgate.example.ru" || u.EscapedPath() != "/api/v1/recordings/a%20b%2Fc-1" {
		t.Fatalf("link %s: %v", link, err)
	}
	q := u.Query()
	if err := l.Verify("a b/c-1", q.Get("exp"), q.Get("sig")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ leg, exp, sig string }{
		{"a b/c-2", q.Get("exp"), q.Get("sig")},                  // another leg
		{"a b/c-1", "1900000000", q.Get("sig")},                  // a longer life
		{"a b/c-1", "x", q.Get("sig")},                           // no time
		{"a b/c-1", q.Get("exp"), ""},                            // no signature
		{"a b/c-1", q.Get("exp"), strings.ToUpper(q.Get("sig"))}, // another spelling
	} {
		if l.Verify(c.leg, c.exp, c.sig) == nil {
			t.Fatalf("accepted %+v", c)
		}
	}
	other := &Links{Key: []byte("other"), TTL: time.Hour, Now: l.Now}
	if other.Verify("a b/c-1", q.Get("exp"), q.Get("sig")) == nil {
		t.Fatal("accepted a link signed with another key")
	}
	now = exp.Add(time.Second)
	if err := l.Verify("a b/c-1", q.Get("exp"), q.Get("sig")); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired link: %v", err)
	}
}

// The free space and the min_free floor are exported as they are at each
// scrape; the floor is 0 when nothing is recorded.
func TestDiskMetrics(t *testing.T) {
	dir := t.TempDir()
	disk := &fakeDisk{}
	disk.free.Store(5 << 30)
	gauges := func(l *Library) map[string]float64 {
		t.Helper()
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(l.Collectors()...)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			if g := mf.GetMetric()[0].GetGauge(); g != nil {
				out[mf.GetName()] = g.GetValue()
			}
		}
		return out
	}
	l := New(Config{Enabled: true, Dir: dir, MinFree: 1 << 30})
	l.guard.free = disk.statfs
	if g := gauges(l); g["callgate_recording_free_bytes"] != 5<<30 || g["callgate_recording_min_free_bytes"] != 1<<30 {
		t.Fatalf("gauges %v", g)
	}
	disk.free.Store(1 << 20)
	if g := gauges(l); g["callgate_recording_free_bytes"] != 1<<20 {
		t.Fatalf("after the disk filled: %v", g)
	}
	off := New(Config{Dir: dir, MinFree: 1 << 30})
	off.guard.free = disk.statfs
	if g := gauges(off); g["callgate_recording_min_free_bytes"] != 0 || g["callgate_recording_free_bytes"] != 1<<20 {
		t.Fatalf("recording disabled: %v", g)
	}
}
