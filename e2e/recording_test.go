package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"callgate/media/g711"
	"callgate/media/record"
	"callgate/media/rtptest"
	"callgate/sip/siptest"
)

func TestKill9MidCallKeepsRecordingAndMarksInterrupted(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, employee := tonePeers(t)
	ctx := withTimeout(t, 20*time.Second)
	call, _, line := o.inbound(ctx, outside.Addr().String(), employee.Addr().String())
	a, _ := siptest.MediaAddr(call.Remote)
	b, _ := siptest.MediaAddr(line.Request.Body())
	outside.SendTo(a)
	employee.SendTo(b)
	audioFrom := time.Now()
	o.d.waitFor("audio", 5*time.Second, func() bool { return hears(outside, 1000) && hears(employee, 440) })
	time.Sleep(2200 * time.Millisecond) // more than two header rewrites
	o.d.kill()
	before := time.Since(audioFrom).Seconds()

	// Restart on the same data: the recording is repaired and the call closed.
	d2 := startDaemon(t, o.d.cfg)
	rec := func() string {
		res, err := d2.get("/api/v1/calls?limit=1", true)
		if err != nil {
			return ""
		}
		defer res.Body.Close()
		var l struct {
			Calls []struct {
				Result string
				Legs   []struct{ Recording string }
			}
		}
		if decodeJSON(res, &l) != nil || len(l.Calls) != 1 || len(l.Calls[0].Legs) != 1 {
			return ""
		}
		if l.Calls[0].Result != "interrupted" {
			return ""
		}
		return l.Calls[0].Legs[0].Recording
	}
	var path string
	d2.waitFor("the call recorded as interrupted", 5*time.Second, func() bool { path = rec(); return path != "" })
	full := filepath.Join(o.recDir, path)
	info, err := record.ReadInfo(full)
	if err != nil {
		t.Fatal(err)
	}
	if secs := float64(info.Frames) / 8000; secs < before-1 {
		t.Fatalf("repaired recording holds %.2fs of the %.2fs before the kill: more than the last second lost", secs, before)
	}
	left, right, _ := record.Channels(full)
	if !rtptest.Has(left[2000:12000], 440) || !rtptest.Has(right[2000:12000], 1000) {
		t.Fatal("repaired recording lost its audio")
	}
	d2.stop()
}

func TestDiskGuardSkipsRecordingCallConnects(t *testing.T) {
	o := newOffice(t, officeOpts{MinFree: "1000000TB"}) // more free space than any disk has
	outside, _ := rtptest.NewPeer(440, g711.PCMA)
	defer outside.Close()
	ctx := withTimeout(t, 15*time.Second)
	call, _, _ := o.inbound(ctx, outside.Addr().String(), "127.0.0.1:30950") // connects with the guard tripped
	o.d.waitMetric("callgate_recording_skipped_total", 1, 5*time.Second)
	call.Hangup(ctx)
	rec := o.lastCall()
	if rec.Result != "answered" || len(rec.Legs) != 1 || rec.Legs[0].Recording != "" {
		t.Fatalf("record %+v", rec)
	}
}
