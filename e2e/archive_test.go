package e2e

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/gateway/archive/archivetest"
	"callgate/gateway/calls"
	"callgate/media/g711"
	"callgate/media/rtptest"
	"callgate/sip/siptest"

	"github.com/chromedp/chromedp"
	"github.com/minio/minio-go/v7"
)

const archiveBucket = "callgate-recordings"

// archiveTOML is the [archive] table for srv, signing with secret.
func archiveTOML(srv *archivetest.Server, secret string) string {
	return fmt.Sprintf(`[archive]
enabled = true
endpoint = %q
bucket = %q
access_key = %q
secret_key = %q
`, srv.Endpoint, archiveBucket, archivetest.AccessKey, secret)
}

// callsWithTones places n inbound calls one after another, each answered
// by ivanov on line 101 with the client sending 440 Hz and ivanov
// 1000 Hz for talk, and returns their records, oldest first. Each call
// has peers of its own, so that no stray packet of one call starts the
// next one's recording.
func (o *office) callsWithTones(ctx context.Context, n int, talk time.Duration) []calls.Record {
	t := o.t
	t.Helper()
	for i := range n {
		outside, err := rtptest.NewPeer(440, g711.PCMA)
		if err != nil {
			t.Fatal(err)
		}
		ivanov, err := rtptest.NewPeer(1000, g711.PCMA)
		if err != nil {
			t.Fatal(err)
		}
		vpbxSide, _, in := o.inbound(ctx, outside.Addr().String(), ivanov.Addr().String())
		toA, errA := siptest.MediaAddr(vpbxSide.Remote)
		toB, errB := siptest.MediaAddr(in.Request.Body())
		if errA != nil || errB != nil {
			t.Fatalf("call %d: media addresses: %v %v", i, errA, errB)
		}
		outside.SendTo(toA)
		ivanov.SendTo(toB)
		<-nextCall(t, o.phones["102"]).Gone()
		time.Sleep(talk)
		if err := vpbxSide.Hangup(ctx); err != nil {
			t.Fatalf("call %d: hang-up: %v", i, err)
		}
		outside.Close()
		ivanov.Close()
	}
	var recs []calls.Record
	o.d.waitFor(fmt.Sprintf("%d calls ended", n), 10*time.Second, func() bool {
		recs = o.recentCalls(n)
		for _, r := range recs {
			if r.Ended.IsZero() {
				return false
			}
		}
		return len(recs) == n
	})
	slices.Reverse(recs)
	return recs
}

// objects lists the bucket: key → the object's information with its
// metadata.
func objects(t *testing.T, c *minio.Client) map[string]minio.ObjectInfo {
	t.Helper()
	out := map[string]minio.ObjectInfo{}
	for o := range c.ListObjects(context.Background(), archiveBucket, minio.ListObjectsOptions{Recursive: true, WithMetadata: true}) {
		if o.Err != nil {
			t.Fatalf("list the bucket: %v", o.Err)
		}
		out[o.Key] = o
	}
	return out
}

// checkArchived asserts that every call's recording is in the bucket once,
// under its day and name, with the call's metadata, and decodes to the
// client's tone on the left and ivanov's on the right for as long as the
// leg talked; and that no local copy is left.
func (o *office) checkArchived(c *minio.Client, recs []calls.Record) {
	t := o.t
	t.Helper()
	objs := objects(t, c)
	if len(objs) != len(recs) {
		t.Fatalf("%d objects in the bucket for %d calls", len(objs), len(recs))
	}
	dir := t.TempDir()
	for _, rec := range recs {
		if rec.Result != "answered" || len(rec.Legs) != 1 || rec.Legs[0].Recording == "" {
			t.Fatalf("call %s: %s, legs %+v", rec.ID, rec.Result, rec.Legs)
		}
		leg := rec.Legs[0]
		key := strings.TrimSuffix(leg.Recording, ".wav") + ".opus"
		if !strings.HasPrefix(key, rec.Started.UTC().Format("2006/01/02/")) && !strings.HasPrefix(key, rec.Started.Format("2006/01/02/")) {
			t.Fatalf("call %s started %s is archived as %s", rec.ID, rec.Started, key)
		}
		info, ok := objs[key]
		if !ok {
			t.Fatalf("call %s: no object %s", rec.ID, key)
		}
		st, err := c.StatObject(context.Background(), archiveBucket, key, minio.StatObjectOptions{})
		m := st.UserMetadata
		if err != nil || m["Call-Id"] != rec.ID || m["Leg"] != "1" || m["Employee"] != "ivanov" || m["Client"] != "+79161234567" || m["Started"] == "" ||
			st.ContentType != "audio/ogg; codecs=opus" {
			t.Fatalf("object %s (%d bytes): metadata %v, %s (%v)", key, info.Size, m, st.ContentType, err)
		}
		p := filepath.Join(dir, rec.ID+".opus")
		if err := c.FGetObject(context.Background(), archiveBucket, key, p, minio.GetObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		left, right, secs := opusChannels(t, p)
		if math.Abs(secs-leg.TalkSeconds) > 0.1 {
			t.Fatalf("call %s: the recording lasts %.3f s, the leg talked %.3f s", rec.ID, secs, leg.TalkSeconds)
		}
		mid := func(ch []float64) []float64 { return ch[len(ch)/4 : 3*len(ch)/4] }
		if !rtptest.Has(mid(left), 440) || !rtptest.Has(mid(right), 1000) {
			t.Fatalf("call %s: want the client's 440 Hz on the left and ivanov's 1000 Hz on the right", rec.ID)
		}
		if _, err := os.Stat(filepath.Join(o.recDir, key)); !os.IsNotExist(err) {
			t.Fatalf("call %s: the local copy is still there (%v)", rec.ID, err)
		}
	}
}

// 100 calls with tones: each recording is compressed to Ogg Opus (the
// client on the left, ivanov on the right, as long as the talk), lands in
// the bucket with the call's metadata and leaves the disk; the console in
// Chromium plays one from the archive, and the link RetailCRM got fetches
// a range of it.
func TestCallsArchivedToObjectStorage(t *testing.T) {
	srv := archivetest.Start(t)
	c := srv.Bucket(t, archiveBucket)
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	o := consoleOffice(t, st, officeOpts{Format: "opus", Extra: archiveTOML(srv, archivetest.SecretKey)})
	ctx := withTimeout(t, 5*time.Minute)
	const n = 100
	recs := o.callsWithTones(ctx, n, 500*time.Millisecond)
	o.d.waitFor("every recording archived", 2*time.Minute, func() bool {
		return len(objects(t, c)) == n && o.d.metric("callgate_archive_queue_depth") == 0
	})
	o.checkArchived(c, recs)
	if v := o.d.metric("callgate_recording_encoded_total"); v != n {
		t.Fatalf("callgate_recording_encoded_total %v, want %d", v, n)
	}

	// The link RetailCRM keeps: a range of the archived file.
	last := recs[len(recs)-1]
	var link string
	o.d.waitFor("the call in RetailCRM's history", 10*time.Second, func() bool {
		for _, h := range st.Calls() {
			if h.ExternalID == last.ID+"-1" {
				link = h.RecordURL
			}
		}
		return link != ""
	})
	req, _ := http.NewRequest("GET", link, nil)
	req.Header.Set("Range", "bytes=0-99")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 206 || len(body) != 100 || !strings.HasPrefix(string(body), "OggS") || res.Header.Get("Content-Type") != "audio/ogg; codecs=opus" {
		t.Fatalf("the CRM's link with a range: %d %s, %d bytes", res.StatusCode, res.Header.Get("Content-Type"), len(body))
	}

	// The console plays it from the archive.
	b := browser(t)
	login(t, b, o.d.url(""), "ivanov")
	duration := value(t, b, "the archived recording's duration in Chromium", chromedp.Poll[float64](
		recordingDuration(last.ID),
		chromedp.WithPollingTimeout(10*time.Second)))
	if math.Abs(duration-last.Legs[0].TalkSeconds) > 0.1 {
		t.Fatalf("Chromium reads %.2f s, the leg talked %.2f s", duration, last.Legs[0].TalkSeconds)
	}
}

// The storage down while 50 calls are made and for 60 s in all, callgate
// restarted in the middle with the queue full: the calls go on as ever,
// the recordings wait on the disk, and once the storage is back all 50
// arrive, each once.
func TestArchiveOutageLosesNothing(t *testing.T) {
	srv := archivetest.Start(t)
	c := srv.Bucket(t, archiveBucket)
	srv.Stop()
	down := time.Now()
	o := newOffice(t, officeOpts{Format: "opus", Extra: archiveTOML(srv, archivetest.SecretKey)})
	ctx := withTimeout(t, 5*time.Minute)
	const n = 50
	recs := o.callsWithTones(ctx, n, 300*time.Millisecond)
	o.d.waitFor("every recording queued and failing", time.Minute, func() bool {
		return o.d.metric("callgate_archive_queue_depth") == n && o.d.metric("callgate_archive_failures_total") >= 1 &&
			o.d.metric("callgate_recording_encode_backlog") == 0
	})
	if age := o.d.metric("callgate_archive_oldest_seconds"); age < 1 {
		t.Fatalf("callgate_archive_oldest_seconds %v with the storage down", age)
	}
	res, err := o.d.get("/readyz", true)
	if err != nil {
		t.Fatal(err)
	}
	ready, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(ready), `"degraded":{"archive":`) {
		t.Fatalf("/readyz with the storage down: %d %s (want ready, the archive's trouble named)", res.StatusCode, ready)
	}

	// A restart with the queue full keeps it.
	o.d.stop()
	o.d = startDaemon(t, o.d.cfg)
	o.d.waitFor("the queue after the restart", 30*time.Second, func() bool { return o.d.metric("callgate_archive_queue_depth") == n })
	if wait := time.Until(down.Add(60 * time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	srv.Resume()
	o.d.waitFor("the queue drained", 2*time.Minute, func() bool {
		return len(objects(t, c)) == n && o.d.metric("callgate_archive_queue_depth") == 0
	})
	time.Sleep(2 * time.Second) // a duplicate upload would show now
	o.checkArchived(c, recs)
}

// A wrong secret key: nothing is uploaded and nothing deleted; the admin
// page and the log say what the storage refused and what to check,
// without the key.
func TestArchiveWrongKeyShown(t *testing.T) {
	srv := archivetest.Start(t)
	c := srv.Bucket(t, archiveBucket)
	const wrong = "not-the-secret-key-0123"
	o := consoleOffice(t, nil, officeOpts{Format: "opus", IvanovExtra: "role = \"admin\"\n", Extra: archiveTOML(srv, wrong)})
	ctx := withTimeout(t, time.Minute)
	recs := o.callsWithTones(ctx, 1, 500*time.Millisecond)
	o.d.waitFor("the upload refused", 30*time.Second, func() bool { return o.d.metric("callgate_archive_failures_total") >= 1 })
	if n := len(objects(t, c)); n != 0 {
		t.Fatalf("%d objects uploaded with a wrong key", n)
	}
	local := filepath.Join(o.recDir, strings.TrimSuffix(recs[0].Legs[0].Recording, ".wav")+".opus")
	if _, err := os.Stat(local); err != nil {
		t.Fatalf("the recording after the refusal: %v", err)
	}
	log := o.d.log.String()
	if !strings.Contains(log, "SignatureDoesNotMatch") || !strings.Contains(log, "check archive.secret_key") || strings.Contains(log, wrong) {
		t.Fatalf("the log does not say what was refused, or shows the key:\n%s", tail(log, 3000))
	}
	b := browser(t)
	login(t, b, o.d.url(""), "ivanov")
	browse(t, b, "the admin page", chromedp.Evaluate[chromedp.Void](`location.hash = '#/admin'`))
	text := value(t, b, "the archive's error on the admin page", chromedp.Poll[string](
		`(() => { const t = document.getElementById('admin').innerText; return t.includes('SignatureDoesNotMatch') ? t : '' })()`,
		chromedp.WithPollingTimeout(10*time.Second)))
	if !strings.Contains(text, "archive.secret_key") || strings.Contains(text, wrong) || !strings.Contains(text, "В архиве: 0 файлов") ||
		!strings.Contains(text, "За неделю записано") {
		t.Fatalf("the admin page:\n%s", text)
	}
}
