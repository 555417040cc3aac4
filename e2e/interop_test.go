package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"callgate/media/record"
	"callgate/media/rtptest"
)

// TestSippVPBXCallsBaresipThroughCallgate: sipp plays the VPBX and sends an
// INVITE with the pcap sample's audio; baresip is the employee's phone,
// auto-answers and sends a 1000 Hz tone. The recording must hold the
// outside party's audio on the left and the tone on the right, and baresip
// must have received audio.
func TestSippVPBXCallsBaresipThroughCallgate(t *testing.T) {
	sipp := needTool(t, "sipp")
	baresip := needTool(t, "baresip")
	sox := needTool(t, "sox")
	cfg := newDaemonConfig(t, "")
	recDir := filepath.Join(cfg.DataDir, "recordings")
	rtp := 42000 + (cfg.SIPPort%100)*100
	cfg.Extra = upstreamSection("127.0.0.1:9") + fmt.Sprintf("[media]\nrtp_ports = \"%d-%d\"\nbind = \"127.0.0.1\"\n[recording]\ndir = %q\nmin_free = \"0\"\n", rtp, rtp+99, recDir)
	d := startDaemon(t, cfg)

	dir := t.TempDir()
	tone := filepath.Join(dir, "tone.wav")
	if out, err := exec.Command(sox, "-n", "-r", "8000", "-c", "1", "-b", "16", tone, "synth", "30", "sine", "1000", "vol", "0.5").CombinedOutput(); err != nil {
		t.Fatalf("sox: %v %s", err, out)
	}
	port := freePort(t)
	os.MkdirAll(filepath.Join(dir, "snd"), 0o755)
	conf := fmt.Sprintf(`sip_listen 127.0.0.1:%d
net_interface 127.0.0.1
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module sndfile.so
module_app account.so
module_app menu.so
audio_source aufile,%s
audio_player aufile,/dev/null
snd_path %s
rtp_ports %d-%d
`, port, tone, filepath.Join(dir, "snd"), rtp+200, rtp+250)
	os.WriteFile(filepath.Join(dir, "config"), []byte(conf), 0o600)
	os.WriteFile(filepath.Join(dir, "accounts"), []byte("<sip:101@"+d.sipAddr()+";transport=udp>;auth_pass=Phone101pass;regint=300;answermode=auto;audio_codecs=PCMA\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	bs := exec.CommandContext(ctx, baresip, "-f", dir)
	bout := &syncBuffer{}
	bs.Stdout, bs.Stderr = bout, bout
	if err := bs.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); bs.Wait() }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("baresip:\n%s", tail(bout.String(), 3000))
		}
	})
	d.waitMetric("callgate_registered_contacts", 1, 15*time.Second)

	sf, _ := filepath.Abs("../testdata/sipp/vpbx-invite-pcap.xml")
	sdir := t.TempDir()
	sc := exec.Command(sipp, d.sipAddr(), "-sf", sf, "-s", "sales1", "-i", "127.0.0.1", "-p", fmt.Sprint(freePort(t)), "-mp", fmt.Sprint(rtp+300),
		"-m", "1", "-nostdin", "-timeout", "30", "-trace_err", "-error_file", filepath.Join(sdir, "err.log"))
	sc.Dir = sdir
	if out, err := sc.CombinedOutput(); err != nil {
		errs, _ := os.ReadFile(filepath.Join(sdir, "err.log"))
		t.Fatalf("sipp: %v\n%s\n%s", err, tail(string(out), 1500), errs)
	}
	rec := (&office{t: t, d: d}).lastCall()
	if rec.Result != "answered" || rec.AnsweredBy != "ivanov" || len(rec.Legs) != 1 || rec.Legs[0].Recording == "" {
		t.Fatalf("record %+v", rec)
	}
	left, right, err := record.Channels(filepath.Join(recDir, rec.Legs[0].Recording))
	if err != nil {
		t.Fatal(err)
	}
	if e := rtptest.Energy(left); e < 1e-4 {
		t.Fatalf("outside channel is silent (energy %g)", e)
	}
	if !rtptest.Has(right[len(right)/4:3*len(right)/4], 1000) {
		t.Fatal("employee channel lacks baresip's 1000 Hz")
	}
	// baresip's sndfile dump of what it decoded (what the phone heard).
	var heard string
	d.waitFor("baresip's decoded-audio dump", 5*time.Second, func() bool {
		m, _ := filepath.Glob(filepath.Join(dir, "snd", "*dec*.wav"))
		if len(m) > 0 {
			heard = m[0]
		}
		return heard != ""
	})
	pcm, err := os.ReadFile(heard)
	if err != nil || len(pcm) < 44+16000 {
		t.Fatalf("baresip heard too little: %v %d bytes", err, len(pcm))
	}
	var samples []float64
	for i := 44; i+1 < len(pcm); i += 2 {
		samples = append(samples, float64(int16(binary.LittleEndian.Uint16(pcm[i:])))/32768)
	}
	if e := rtptest.Energy(samples); e < 1e-4 {
		t.Fatalf("baresip's received audio is silent (energy %g)", e)
	}
}
