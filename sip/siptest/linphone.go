package siptest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LinphoneConfig describes one headless Linphone (Debian's linphonec, the
// belle-sip/liblinphone stack) registered to a registrar.
type LinphoneConfig struct {
	Binary    string // linphonec; found on PATH when empty
	Script    string // script(1), which gives linphonec the terminal it expects; found on PATH when empty
	Dir       string // its HOME, configuration, log and audio files
	User      string // the extension it registers
	Password  string
	Registrar string // host:port
	// Transport is "udp" (the default) or "tcp": with "tcp" the phone has
	// no UDP listener at all.
	Transport string
	SIPPort   int    // its listening port
	RTPPort   int    // its audio RTP port
	Play      string // WAV file sent as the microphone
	// AVPF, ICE and RTCPMux turn on what softphones increasingly offer by
	// default: RTP/AVPF with rtcp-fb, ICE candidates, rtcp-mux. ICE needs
	// a STUN server address; nothing has to answer there.
	AVPF, ICE, RTCPMux bool
	// Codecs limits the audio codecs it offers (MIME names such as "PCMA",
	// "opus"); empty keeps G.711 A-law and µ-law only.
	Codecs     []string
	AutoAnswer bool
}

// Linphone is a running linphonec driven through its command line, the
// way its own documentation drives it headless.
type Linphone struct {
	cfg  LinphoneConfig
	cmd  *exec.Cmd
	in   *os.File
	out  *lineBuffer
	done chan struct{}
	// Heard is the WAV file it writes what it receives into (per call;
	// liblinphone rewrites it when the next call starts).
	Heard string
	// Log is liblinphone's full log, SIP messages included.
	Log string
}

// StartLinphone writes linphonec's configuration, starts it and prepares
// file audio. It returns once the command line answers.
func StartLinphone(cfg LinphoneConfig) (*Linphone, error) {
	if cfg.Binary == "" {
		cfg.Binary = "linphonec"
	}
	if cfg.Script == "" {
		cfg.Script = "script"
	}
	if cfg.Transport == "" {
		cfg.Transport = "udp"
	}
	home := filepath.Join(cfg.Dir, "home")
	// liblinphone opens no listening point until its data directory exists.
	if err := os.MkdirAll(filepath.Join(home, ".local", "share", "linphone"), 0o755); err != nil {
		return nil, fmt.Errorf("linphone home: %w", err)
	}
	rc := filepath.Join(cfg.Dir, "linphonerc")
	if err := os.WriteFile(rc, []byte(linphoneRC(cfg)), 0o600); err != nil {
		return nil, fmt.Errorf("linphone config: %w", err)
	}
	l := &Linphone{cfg: cfg, out: &lineBuffer{}, done: make(chan struct{}),
		Heard: filepath.Join(cfg.Dir, "heard.wav"), Log: filepath.Join(cfg.Dir, "linphone.log")}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	line := fmt.Sprintf("%s -S -c %s -d 6 -l %s", shellQuote(cfg.Binary), shellQuote(rc), shellQuote(l.Log))
	l.cmd = exec.Command(cfg.Script, "-q", "-e", "-c", line, "/dev/null")
	l.cmd.Env = append(os.Environ(), "HOME="+home, "TERM=dumb")
	l.cmd.Dir = cfg.Dir
	l.cmd.Stdin, l.cmd.Stdout, l.cmd.Stderr = r, l.out, l.out
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := l.cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start linphonec: %w", err)
	}
	r.Close()
	l.in = w
	go func() { _ = l.cmd.Wait(); close(l.done) }()
	if _, err := l.Expect(`linphonec> `, 10*time.Second); err != nil {
		l.Close()
		return nil, err
	}
	for _, c := range []string{"soundcard use files", "record " + l.Heard} {
		if err := l.Send(c); err != nil {
			l.Close()
			return nil, err
		}
	}
	if cfg.Play != "" {
		if err := l.Send("play " + cfg.Play); err != nil {
			l.Close()
			return nil, err
		}
	}
	if cfg.AutoAnswer {
		if err := l.Send("autoanswer enable"); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

func linphoneRC(cfg LinphoneConfig) string {
	var b strings.Builder
	udp, tcp := cfg.SIPPort, 0
	if cfg.Transport == "tcp" {
		udp, tcp = 0, cfg.SIPPort
	}
	fmt.Fprintf(&b, "[sip]\nsip_port=%d\nsip_tcp_port=%d\nsip_tls_port=0\nguess_hostname=1\ninc_timeout=30\nregister_only_when_network_is_up=0\n", udp, tcp)
	fmt.Fprintf(&b, "[rtp]\naudio_rtp_port=%d\nvideo_rtp_port=0\ntext_rtp_port=0\nrtcp_mux=%d\n", cfg.RTPPort, bit(cfg.RTCPMux))
	b.WriteString("[video]\ncapture=0\ndisplay=0\nautomatically_initiate=0\nautomatically_accept=0\n")
	b.WriteString("[sound]\necho_cancellation=0\n")
	if cfg.ICE {
		b.WriteString("[net]\nnat_policy_ref=np\n[nat_policy_0]\nref=np\nstun_server=127.0.0.1:3478\nprotocols=stun,ice\n")
	} else {
		b.WriteString("[net]\nfirewall_policy=0\n")
	}
	fmt.Fprintf(&b, "[auth_info_0]\nusername=%s\npasswd=%s\n", cfg.User, cfg.Password)
	fmt.Fprintf(&b, "[proxy_0]\nreg_proxy=<sip:%s;transport=%s>\nreg_identity=sip:%s@%s\nreg_expires=300\nreg_sendregister=1\npublish=0\navpf=%d\n",
		cfg.Registrar, cfg.Transport, cfg.User, cfg.Registrar, bit(cfg.AVPF))
	if cfg.ICE {
		b.WriteString("nat_policy_ref=np\n")
	}
	enabled := cfg.Codecs
	if len(enabled) == 0 {
		enabled = []string{"PCMA", "PCMU"}
	}
	// liblinphone appends every codec the rc does not name, enabled, so
	// each one it knows is listed.
	for i, c := range linphoneCodecs {
		on := 0
		for _, e := range enabled {
			if strings.EqualFold(e, c.mime) {
				on = 1
			}
		}
		fmt.Fprintf(&b, "[audio_codec_%d]\nmime=%s\nrate=%d\nchannels=%d\nenabled=%d\n", i, c.mime, c.rate, c.channels, on)
	}
	return b.String()
}

// linphoneCodecs are the audio codecs liblinphone 5.1 has (its rc after a
// first start).
var linphoneCodecs = []struct {
	mime           string
	rate, channels int
}{
	{"opus", 48000, 2}, {"speex", 16000, 1}, {"speex", 8000, 1}, {"PCMU", 8000, 1}, {"PCMA", 8000, 1},
	{"GSM", 8000, 1}, {"G722", 8000, 1}, {"G729", 8000, 1}, {"speex", 32000, 1},
	{"G726-16", 8000, 1}, {"G726-24", 8000, 1}, {"G726-32", 8000, 1}, {"G726-40", 8000, 1},
	{"AAL2-G726-16", 8000, 1}, {"AAL2-G726-24", 8000, 1}, {"AAL2-G726-32", 8000, 1}, {"AAL2-G726-40", 8000, 1},
	{"L16", 44100, 2}, {"L16", 44100, 1},
}

func bit(v bool) int {
	if v {
		return 1
	}
	return 0
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Send types one command line.
func (l *Linphone) Send(command string) error {
	if _, err := l.in.Write([]byte(command + "\n")); err != nil {
		return fmt.Errorf("linphonec %q: %w", command, err)
	}
	return nil
}

// Expect waits for pattern (a regular expression) in what linphonec
// printed since the last match, and returns the matching text.
func (l *Linphone) Expect(pattern string, timeout time.Duration) (string, error) {
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(timeout)
	for {
		if m, ok := l.out.next(re); ok {
			return m, nil
		}
		select {
		case <-l.done:
			return "", fmt.Errorf("linphonec exited while waiting for %q", pattern)
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("linphonec did not print %q within %s", pattern, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Registered waits until liblinphone reports its account registered.
func (l *Linphone) Registered(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(l.Log)
		if bytes.Contains(b, []byte("to [LinphoneRegistrationOk]")) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("linphone %s did not register within %s", l.cfg.User, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SIPPort is the port it listens on.
func (l *Linphone) SIPPort() int { return l.cfg.SIPPort }

// Output is everything linphonec printed.
func (l *Linphone) Output() string { return l.out.String() }

// Close quits linphonec, killing it if it does not exit promptly.
func (l *Linphone) Close() {
	_ = l.Send("quit")
	select {
	case <-l.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-l.cmd.Process.Pid, syscall.SIGKILL)
		<-l.done
	}
	l.in.Close()
}

// lineBuffer keeps output and a read mark for Expect.
type lineBuffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	mark int
}

func (s *lineBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *lineBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *lineBuffer) next(re *regexp.Regexp) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rest := s.b.Bytes()[s.mark:]
	loc := re.FindIndex(rest)
	if loc == nil {
		return "", false
	}
	s.mark += loc[1]
	return string(rest[loc[0]:loc[1]]), true
}
