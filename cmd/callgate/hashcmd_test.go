package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"callgate/internal/testenv"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal: the controlling side, and the terminal
// a program is given as its stdin and stderr.
func openPTY(t *testing.T) (ptm, pts *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		testenv.Unavailable(t, "no pseudo-terminals here: %v", err)
	}
	fd := int(ptm.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ptm.Close(); pts.Close() })
	return ptm, pts
}

// terminal is what the person at a terminal sees: everything the program
// and the terminal's echo write to it.
type terminal struct {
	mu   sync.Mutex
	seen bytes.Buffer
	pts  *os.File
	ptm  *os.File
}

func (tm *terminal) read() {
	buf := make([]byte, 256)
	for {
		n, err := tm.ptm.Read(buf)
		tm.mu.Lock()
		tm.seen.Write(buf[:n])
		tm.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (tm *terminal) screen() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.seen.String()
}

// typeAt waits for the prompt's nth appearance and for echo to be off
// (the program turns it off right after the prompt), then types line.
func (tm *terminal) typeAt(t *testing.T, prompt string, nth int, line string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(tm.screen(), prompt) < nth {
		if time.Now().After(deadline) {
			t.Fatalf("no prompt %q (%d); the terminal shows %q", prompt, nth, tm.screen())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		st, err := unix.IoctlGetTermios(int(tm.pts.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if st.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("echo is still on after the prompt")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := io.WriteString(tm.ptm, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// hashOnTerminal runs hash-password with a terminal as its stdin and
// stderr, types the two passwords, and returns stdout, what the terminal
// showed, and the exit code.
func hashOnTerminal(t *testing.T, first, second string) (string, string, int) {
	ptm, pts := openPTY(t)
	tm := &terminal{ptm: ptm, pts: pts}
	cmd := exec.Command(binPath, "hash-password")
	var out bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, &out, pts
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go tm.read()
	tm.typeAt(t, "password: ", 1, first)
	if second != "" {
		tm.typeAt(t, "again: ", 1, second)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("hash-password did not finish; the terminal shows %q", tm.screen())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the last of the terminal's output
	return out.String(), tm.screen(), code
}

func TestHashPasswordOnTerminal(t *testing.T) {
	const pw = "Console-Pass-1"
	out, screen, code := hashOnTerminal(t, pw, pw)
	if code != 0 || bcrypt.CompareHashAndPassword([]byte(strings.TrimSpace(out)), []byte(pw)) != nil {
		t.Fatalf("exit %d, stdout %q, terminal %q", code, out, screen)
	}
	if strings.Contains(screen, pw) || strings.Contains(out, pw) {
		t.Fatalf("the password was shown: terminal %q, stdout %q", screen, out)
	}
	if !strings.Contains(screen, "again: ") {
		t.Fatalf("asked once: %q", screen)
	}
}

func TestHashPasswordOnTerminalMismatch(t *testing.T) {
	out, screen, code := hashOnTerminal(t, "Console-Pass-1", "Console-Pass-2")
	if code != exitUsage || out != "" || !strings.Contains(screen, "differ") {
		t.Fatalf("exit %d, stdout %q, terminal %q", code, out, screen)
	}
	out, screen, code = hashOnTerminal(t, "short", "")
	if code != exitUsage || out != "" || !strings.Contains(screen, "at least 8") {
		t.Fatalf("short: exit %d, stdout %q, terminal %q", code, out, screen)
	}
}

// Piped, it reads one line and asks nothing.
func TestHashPasswordPiped(t *testing.T) {
	cases := []struct {
		stdin string
		code  int
		err   string
	}{
		{"Console-Pass-1\n", 0, ""},
		{"Console-Pass-1", 0, ""},
		{"Console-Pass-1\r\nsecond line\n", 0, ""},
		{"short\n", exitUsage, "at least 8"},
		{"", exitUsage, "no password"},
	}
	for _, tc := range cases {
		out, errs, code := runCLI(t, tc.stdin, "hash-password")
		if code != tc.code || !strings.Contains(errs, tc.err) || strings.HasPrefix(errs, "password: ") || strings.Contains(errs, "again: ") {
			t.Errorf("%q: exit %d, stderr %q", tc.stdin, code, errs)
			continue
		}
		if tc.code == 0 && bcrypt.CompareHashAndPassword([]byte(strings.TrimSpace(out)), []byte("Console-Pass-1")) != nil {
			t.Errorf("%q: %q is not the hash of the first line", tc.stdin, out)
		}
	}
}
