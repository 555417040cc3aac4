package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"callgate/gateway/calls"
	"callgate/media/g711"
	"callgate/media/record"
	"callgate/media/rtptest"
	"callgate/sip/siptest"
)

// Linphone (Debian's linphonec: belle-sip and liblinphone, the stack of
// many softphones) is ivanov's phone on line 101 in these tests. Each runs
// in its own loopback-only network namespace: Linphone offers every
// address the machine has, and media must never leave loopback.

// linphoneOffice is an office whose ivanov (lines 101 and 102) has only
// Linphone, registered as 101 and sending a 1000 Hz tone; petrov's 103 is
// a siptest phone.
func linphoneOffice(t *testing.T, lc siptest.LinphoneConfig) (*office, *siptest.Linphone) {
	t.Helper()
	lc.Binary = needTool(t, "linphonec")
	lc.Script = needTool(t, "script")
	sox := needTool(t, "sox")
	o := newOffice(t, officeOpts{Without: []string{"101", "102"}})
	lc.Dir = t.TempDir()
	lc.Play = filepath.Join(lc.Dir, "tone1000.wav")
	if out, err := exec.Command(sox, "-n", "-r", "8000", "-c", "1", "-b", "16", lc.Play, "synth", "120", "sine", "1000", "vol", "0.5").CombinedOutput(); err != nil {
		t.Fatalf("sox: %v %s", err, out)
	}
	lc.User, lc.Password, lc.Registrar = "101", "Phone101pass", o.d.sipAddr()
	lc.SIPPort, lc.RTPPort = freePort(t), freePort(t)
	lp, err := siptest.StartLinphone(lc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		lp.Close()
		// CALLGATE_LINPHONE_LOGS=DIR keeps each test's liblinphone log.
		if dir := os.Getenv("CALLGATE_LINPHONE_LOGS"); dir != "" {
			b, _ := os.ReadFile(lp.Log)
			os.WriteFile(filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".log"), b, 0o644)
		}
		if t.Failed() {
			log, _ := os.ReadFile(lp.Log)
			t.Logf("linphonec:\n%s\nliblinphone log:\n%s", tail(lp.Output(), 4000), tail(sipOnly(string(log)), 30000))
		}
	})
	if err := lp.Registered(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	o.d.waitMetric("callgate_registered_contacts", 2, 5*time.Second)
	return o, lp
}

// sipOnly keeps the SIP messages of a liblinphone log and its warnings
// and errors, which is what a failure needs.
func sipOnly(log string) string {
	var b strings.Builder
	keep := false
	for _, line := range strings.Split(log, "\n") {
		switch {
		case strings.Contains(line, "message sent to") || strings.Contains(line, "new bytes from"):
			keep = true
		case strings.HasPrefix(line, "20") && keep:
			keep = false
		}
		if keep || strings.Contains(line, "-error-") || strings.Contains(line, "-warning-") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

var sipStartLine = regexp.MustCompile(`^(SIP/2\.0 \d{3} |[A-Z]+ \S+ SIP/2\.0$)`)

// linphoneGot is every SIP message Linphone received whose start line
// begins with start and whose CSeq names method.
func linphoneGot(t *testing.T, lp *siptest.Linphone, start, method string) []string {
	t.Helper()
	log, err := os.ReadFile(lp.Log)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var msg []string
	in := false
	flush := func() {
		if len(msg) > 0 && strings.HasPrefix(msg[0], start) {
			m := strings.Join(msg, "\n")
			if regexp.MustCompile(`(?m)^CSeq: \d+ ` + method + `\s*$`).MatchString(m) {
				got = append(got, m)
			}
		}
		msg = nil
	}
	for _, line := range strings.Split(string(log), "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, "20"): // a log line ends the message before it
			flush()
			in = strings.Contains(line, "new bytes from")
			continue
		case in && sipStartLine.MatchString(line): // over TCP one read may hold several
			flush()
		}
		if in {
			msg = append(msg, line)
		}
	}
	flush()
	return got
}

// heardWAV is what Linphone wrote of the audio it received, as 8 kHz
// samples (it records at its own rate).
func heardWAV(t *testing.T, path string) []float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 44 || string(b[:4]) != "RIFF" {
		t.Fatalf("linphone's recording %s: %v (%d bytes)", path, err, len(b))
	}
	rate := 8000
	for off := 12; off+8 <= len(b); {
		id, size := string(b[off:off+4]), int(binary.LittleEndian.Uint32(b[off+4:]))
		body := b[off+8:]
		switch id {
		case "fmt ":
			rate = int(binary.LittleEndian.Uint32(body[4:]))
		case "data":
			// liblinphone leaves the size unset until the file is closed.
			if size == 0 || size > len(body) {
				size = len(body)
			}
			var samples []float64
			step := max(rate/8000, 1)
			for i := 0; i+1 < size; i += 2 * step {
				samples = append(samples, float64(int16(binary.LittleEndian.Uint16(body[i:])))/32768)
			}
			return samples
		}
		off += 8 + size + size%2
	}
	t.Fatalf("linphone's recording %s has no data chunk", path)
	return nil
}

// linphoneHeard asserts that Linphone received freq during its last call.
func linphoneHeard(t *testing.T, lp *siptest.Linphone, freq float64) {
	t.Helper()
	s := heardWAV(t, lp.Heard)
	if len(s) < 8000 || !rtptest.Has(s[len(s)/4:3*len(s)/4], freq) {
		t.Fatalf("linphone did not hear %g Hz (%d samples)", freq, len(s))
	}
}

// recordingHas asserts a leg's recording: the outside party's tone on the
// left, the employee's on the right.
func (o *office) recordingHas(leg calls.Leg, left, right float64) {
	o.t.Helper()
	if leg.Recording == "" {
		o.t.Fatalf("leg %+v has no recording", leg)
	}
	l, r, err := record.Channels(filepath.Join(o.recDir, leg.Recording))
	if err != nil {
		o.t.Fatal(err)
	}
	mid := func(ch []float64) []float64 { return ch[len(ch)/4 : 3*len(ch)/4] }
	if !rtptest.Has(mid(l), left) || !rtptest.Has(mid(r), right) {
		o.t.Fatalf("recording %s: want %g Hz left and %g Hz right", leg.Recording, left, right)
	}
}

// linphoneAnswers has the VPBX call sales1 with the outside party's RTP;
// Linphone answers by itself. It returns the VPBX's side once the outside
// party hears Linphone's tone.
func (o *office) linphoneAnswers(ctx context.Context, outside *rtptest.Peer) *siptest.Call {
	o.t.Helper()
	vpbxSide, err := o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP(outside.Addr().String()))
	if err != nil {
		o.t.Fatal(err)
	}
	toRelay, _ := siptest.MediaAddr(vpbxSide.Remote)
	outside.SendTo(toRelay)
	o.d.waitFor("the outside party hears linphone", 10*time.Second, func() bool { return hears(outside, 1000) })
	return vpbxSide
}

// reinvitesAtVPBX collects the directions of the re-INVITEs the VPBX got
// until want is seen.
func (o *office) reinvitesAtVPBX(want string, timeout time.Duration) []string {
	o.t.Helper()
	var got []string
	deadline := time.After(timeout)
	for {
		select {
		case r := <-o.vpbx.Requests:
			if r.Method != "INVITE" {
				continue
			}
			dir := "sendrecv"
			for _, d := range []string{"sendonly", "recvonly", "inactive"} {
				if strings.Contains(string(r.Body()), "a="+d) {
					dir = d
				}
			}
			got = append(got, dir)
			if dir == want {
				return got
			}
		case <-deadline:
			o.t.Fatalf("the VPBX got no re-INVITE %s; got %v", want, got)
		}
	}
}

// listeningConnections counts established TCP connections in this network
// namespace whose local port is port: connections someone opened to it.
func listeningConnections(t *testing.T, port int) int {
	t.Helper()
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		file, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "01" { // ESTABLISHED
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
				n++
			}
		}
		file.Close()
	}
	return n
}

// transferTarget answers a transfer: petrov's 103 (a siptest phone) or an
// outside number at the VPBX, with a 1500 Hz tone.
type transferTarget struct {
	uri  string // what Linphone is told
	peer *rtptest.Peer
	done <-chan struct{}
}

func (o *office) answerTransfer(ctx context.Context, toOutside bool) chan transferTarget {
	o.t.Helper()
	peer, err := rtptest.NewPeer(1500, g711.PCMA)
	if err != nil {
		o.t.Fatal(err)
	}
	o.t.Cleanup(peer.Close)
	ch := make(chan transferTarget, 1)
	go func() {
		var in *siptest.IncomingCall
		select {
		case in = <-o.phones["103"].Calls:
		case in = <-o.vpbx.Calls:
			if !toOutside {
				return
			}
		case <-ctx.Done():
			return
		}
		c, err := in.Answer(ctx, siptest.SDP(peer.Addr().String()))
		if err != nil {
			return
		}
		to, _ := siptest.MediaAddr(in.Request.Body())
		peer.SendTo(to)
		ch <- transferTarget{uri: in.Request.Recipient.User, peer: peer, done: c.Done()}
	}()
	return ch
}

// adminPhones is the phones part of the admin page.
type adminPhones struct {
	Phones []struct {
		Extension string `json:"extension"`
		Transport string `json:"transport"`
		UserAgent string `json:"user_agent"`
	} `json:"phones"`
}

func decodeInto(b []byte, v any) error { return json.Unmarshal(b, v) }

// recentCalls is the newest n calls of the history.
func (o *office) recentCalls(n int) []calls.Record {
	o.t.Helper()
	var list struct{ Calls []calls.Record }
	res, err := o.d.get(fmt.Sprintf("/api/v1/calls?limit=%d", n), true)
	if err != nil {
		o.t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		o.t.Fatal(err)
	}
	return list.Calls
}
