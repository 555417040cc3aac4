package e2e

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"callgate/gateway/calls"
	"callgate/internal/testenv"
	"callgate/media/record"
	"callgate/media/rtptest"
	"callgate/sip/siptest"
)

// mountTmpfs mounts a tmpfs of size on dir for the test.
func mountTmpfs(t *testing.T, dir, size string) { testenv.MountTmpfs(t, dir, size) }

// fillLeaving writes a filler file so that only leave bytes stay free on
// dir's filesystem, and returns its path.
func fillLeaving(t *testing.T, dir string, leave uint64) string {
	t.Helper()
	free, err := record.FreeBytes(dir)
	if err != nil || free <= leave {
		t.Fatalf("free %d on %s (want more than %d): %v", free, dir, leave, err)
	}
	p := filepath.Join(dir, "filler")
	if err := os.WriteFile(p, make([]byte, free-leave), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkWAV parses a recording's header itself (not through the package
// that wrote it) and asserts that its sizes match the data in the file.
func checkWAV(t *testing.T, path string) (left, right []float64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const hdr = 58
	if len(b) < hdr || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" || string(b[50:54]) != "data" {
		t.Fatalf("%s is not a WAV file (%d bytes)", path, len(b))
	}
	riff, data, frames := binary.LittleEndian.Uint32(b[4:]), binary.LittleEndian.Uint32(b[54:]), binary.LittleEndian.Uint32(b[46:])
	if int(riff) != len(b)-8 || int(data) != len(b)-hdr || data != 2*frames {
		t.Fatalf("%s: header says RIFF %d, data %d, %d frames; the file holds %d data bytes", path, riff, data, frames, len(b)-hdr)
	}
	left, right, err = record.Channels(path)
	if err != nil || len(left) != int(frames) {
		t.Fatalf("%s: %d samples of %d frames: %v", path, len(left), frames, err)
	}
	return left, right
}

// The recording dir fills up during a call (a tmpfs of a few MB, nearly
// full): the call goes on with its audio, the recording is a valid WAV of
// the part before the disk filled, callgate_recording_truncated_total
// counts it, and the next calls are saved in the history with their
// result (recorded again once space returns). Once through a failed write
// (min_free 0: ENOSPC) and once through the free-space check (min_free).
func TestRecordingDiskFullCallGoesOnAndNextCallIsSaved(t *testing.T) {
	for _, tc := range []struct {
		name, minFree string
		leave         uint64 // bytes left free on the tmpfs when the call starts
	}{
		{"write fails", "0", 64 << 10},
		{"below min_free", "1MiB", 1<<20 + 64<<10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOffice(t, officeOpts{MinFree: tc.minFree})
			mountTmpfs(t, o.recDir, "4m")
			filler := fillLeaving(t, o.recDir, tc.leave)
			// The admin page shows the free space of both the recording
			// dir (the small tmpfs) and the database's dir.
			var admin struct {
				Recordings struct {
					FreeBytes uint64 `json:"free_bytes"`
				}
				Store struct {
					Dir           string
					FreeBytes     uint64 `json:"free_bytes"`
					PendingWrites *int   `json:"pending_writes"`
				}
			}
			res, err := o.d.get("/api/v1/admin", true)
			if err != nil || decodeJSON(res, &admin) != nil {
				t.Fatalf("admin: %v", err)
			}
			res.Body.Close()
			if admin.Recordings.FreeBytes > tc.leave || admin.Store.Dir != o.d.cfg.DataDir || admin.Store.FreeBytes <= 4<<20 ||
				admin.Store.PendingWrites == nil || *admin.Store.PendingWrites != 0 {
				t.Fatalf("admin page disk space: %+v", admin)
			}
			outside, employee := tonePeers(t)
			ctx := withTimeout(t, 60*time.Second)

			vpbxSide, _, in := o.inbound(ctx, outside.Addr().String(), employee.Addr().String())
			toA, err := siptest.MediaAddr(vpbxSide.Remote)
			if err != nil {
				t.Fatal(err)
			}
			toB, err := siptest.MediaAddr(in.Request.Body())
			if err != nil {
				t.Fatal(err)
			}
			outside.SendTo(toA)
			employee.SendTo(toB)
			talkStart := time.Now()
			o.d.waitFor("each side hears the other", 5*time.Second, func() bool { return hears(outside, 1000) && hears(employee, 440) })
			// About 4 s of audio fit (16 kB/s).
			o.d.waitMetric("callgate_recording_truncated_total", 1, 20*time.Second)
			stoppedAt := time.Since(talkStart)
			time.Sleep(1500 * time.Millisecond)
			if !hears(outside, 1000) || !hears(employee, 440) {
				t.Fatal("the call lost its audio when the recording stopped")
			}
			if o.d.metric("callgate_calls_active") != 1 {
				t.Fatal("the call did not go on")
			}
			if err := vpbxSide.Hangup(ctx); err != nil {
				t.Fatal(err)
			}
			rec := o.lastCall()
			if rec.Result != "answered" || len(rec.Legs) != 1 || rec.Legs[0].Recording == "" || !rec.Legs[0].RecordingTruncated {
				t.Fatalf("record of the call whose recording stopped: %+v", rec)
			}
			left, right := checkWAV(t, filepath.Join(o.recDir, rec.Legs[0].Recording))
			recorded := float64(len(left)) / 8000
			if recorded < 1 || recorded > stoppedAt.Seconds()+0.5 || rec.TalkSeconds < recorded+1 {
				t.Fatalf("recorded %.2f s of a %.2f s call, stopped after %.2f s", recorded, rec.TalkSeconds, stoppedAt.Seconds())
			}
			part := func(ch []float64) []float64 { return ch[len(ch)/4 : 3*len(ch)/4] }
			if !rtptest.Has(part(left), 440) || !rtptest.Has(part(right), 1000) {
				t.Fatal("the recorded part lost the tones")
			}
			if !strings.Contains(o.d.log.String(), "recording stopped early") || !strings.Contains(o.d.log.String(), "call_id="+rec.ID) {
				t.Fatal("the stopped recording is not logged with its call_id")
			}

			t.Logf("recorded %.2f s of a %.2f s call", recorded, rec.TalkSeconds)
			// The next call, on the still full disk: saved with its result.
			second := o.talk(ctx, outside, employee, time.Second)
			if second.ID == rec.ID || second.Result != "answered" || len(second.Legs) != 1 {
				t.Fatalf("next call's record: %+v", second)
			}
			t.Logf("next call on the full disk: recording %q truncated %v", second.Legs[0].Recording, second.Legs[0].RecordingTruncated)
			if l := second.Legs[0]; l.Recording != "" {
				checkWAV(t, filepath.Join(o.recDir, l.Recording))
			}

			// Space comes back: the call after is recorded whole.
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			third := o.talk(ctx, outside, employee, 1500*time.Millisecond)
			if third.Result != "answered" || len(third.Legs) != 1 || third.Legs[0].Recording == "" || third.Legs[0].RecordingTruncated {
				t.Fatalf("call after space returned: %+v", third)
			}
			l, r := checkWAV(t, filepath.Join(o.recDir, third.Legs[0].Recording))
			if float64(len(l))/8000 < third.TalkSeconds-0.3 || !rtptest.Has(part(l), 440) || !rtptest.Has(part(r), 1000) {
				t.Fatalf("recording after space returned: %.2f s of %.2f s", float64(len(l))/8000, third.TalkSeconds)
			}
		})
	}
}

// talk places an inbound call answered on line 101, lets both tones flow
// for d, hangs up from outside and returns the call's record.
func (o *office) talk(ctx context.Context, outside, employee *rtptest.Peer, d time.Duration) calls.Record {
	o.t.Helper()
	before := o.lastCall().ID
	vpbxSide, _, in := o.inbound(ctx, outside.Addr().String(), employee.Addr().String())
	toA, err := siptest.MediaAddr(vpbxSide.Remote)
	if err != nil {
		o.t.Fatal(err)
	}
	toB, err := siptest.MediaAddr(in.Request.Body())
	if err != nil {
		o.t.Fatal(err)
	}
	outside.SendTo(toA)
	employee.SendTo(toB)
	o.d.waitFor("each side hears the other", 5*time.Second, func() bool { return hears(outside, 1000) && hears(employee, 440) })
	time.Sleep(d)
	if err := vpbxSide.Hangup(ctx); err != nil {
		o.t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if r := o.lastCall(); r.ID != before {
			return r
		}
	}
	o.t.Fatal("the call is not in the history")
	return calls.Record{}
}
