package control

import (
	"bufio"
	"callgate/internal/aside"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Store is what the server copies: store.Store.
type Store interface {
	Backup(w io.Writer) (int64, error)
}

// Timeouts of the server.
const (
	requestTimeout = 5 * time.Second  // to send the request line
	stallTimeout   = 30 * time.Second // for a client to take the next frame
)

// Server serves the control socket.
type Server struct {
	ln    *net.UnixListener
	path  string
	store Store
	log   *slog.Logger
	uid   int // the daemon's user, besides root the only one admitted
	busy  atomic.Bool

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Open is Listen for the daemon, which runs on without a control socket:
// nil when path is empty (none configured) or the socket cannot be made
// (logged).
func Open(path string, st Store, log *slog.Logger) *Server {
	if path == "" {
		return nil
	}
	s, err := Listen(path, st, log)
	if err != nil {
		log.Error("no control socket: `callgate backup` cannot reach this daemon", "error", err)
		return nil
	}
	return s
}

// Listen makes the socket at path, mode 0600. A socket left there by a
// callgate that died is replaced; one that another process serves, or a
// file that is not a socket, is an error.
func Listen(path string, st Store, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &Server{ln: ln, path: path, store: st, log: log.With("component", "control"), uid: os.Geteuid(),
		conns: map[net.Conn]struct{}{}}, nil
}

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("control socket %s: a file that is not a socket is in the way", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another process serves it (a second callgate with the same control.socket?)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("control socket: remove the one a stopped callgate left: %w", err)
	}
	return nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve accepts connections until Close. A nil Server does nothing.
func (s *Server) Serve() {
	if s == nil {
		return
	}
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			s.log.Error("control socket accept", "error", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if !s.track(c) {
			c.Close()
			return
		}
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.handle(c)
		}()
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close stops serving, ends the connections (a copy in progress fails at
// its client) and removes the socket. A nil Server does nothing.
func (s *Server) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) handle(c *net.UnixConn) {
	cred, err := PeerCred(c)
	if err != nil {
		s.log.Error("control socket: no peer credentials", "error", err)
		return
	}
	if !Allowed(cred.Uid, s.uid) {
		s.log.Warn("control connection refused", "peer_uid", cred.Uid, "peer_pid", cred.Pid)
		writeStatus(c, fmt.Errorf("permission denied: only root and uid %d may use this socket", s.uid))
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(requestTimeout))
	line, err := readLine(bufio.NewReaderSize(c, maxRequest), maxRequest)
	if err != nil {
		writeStatus(c, err)
		return
	}
	cmd, err := ParseRequest(line)
	if err != nil {
		s.log.Warn("control request refused", "peer_uid", cred.Uid, "error", err)
		writeStatus(c, err)
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	switch cmd {
	case CmdPing:
		_, _ = fmt.Fprintf(c, "ok callgate pid %d\n", os.Getpid())
	case CmdBackup:
		s.backup(c, cred)
	}
}

func (s *Server) backup(c net.Conn, cred *syscall.Ucred) {
	if !s.busy.CompareAndSwap(false, true) {
		writeStatus(c, errors.New("busy: another backup is in progress"))
		return
	}
	defer s.busy.Store(false)
	start := time.Now()
	if _, err := io.WriteString(c, "ok\n"); err != nil {
		return
	}
	sw := newStreamWriter(stallWriter{c})
	var n int64
	var err error
	aside.Run(func() { // seconds of copying while calls go on
		n, err = s.store.Backup(sw)
		if ferr := sw.finish(err); err == nil {
			err = ferr
		}
	})
	if err != nil {
		s.log.Error("backup over the control socket failed", "peer_uid", cred.Uid, "peer_pid", cred.Pid, "bytes", n, "error", err)
		return
	}
	s.log.Info("backup sent over the control socket", "peer_uid", cred.Uid, "peer_pid", cred.Pid, "bytes", n,
		"took", time.Since(start).Round(time.Millisecond))
}

// writeStatus answers with an error line.
func writeStatus(c net.Conn, err error) {
	_ = c.SetWriteDeadline(time.Now().Add(requestTimeout))
	_, _ = io.WriteString(c, "error "+oneLine(err.Error())+"\n")
}

// stallWriter fails a write the client does not take within stallTimeout,
// so a stuck client cannot hold the copy's read transaction open forever.
type stallWriter struct{ c net.Conn }

func (w stallWriter) Write(p []byte) (int, error) {
	_ = w.c.SetWriteDeadline(time.Now().Add(stallTimeout))
	return w.c.Write(p)
}

// PeerCred is the credentials of the process at the other end of c, as the
// kernel recorded them when it connected (SO_PEERCRED).
func PeerCred(c *net.UnixConn) (*syscall.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}

// Allowed says whether a peer running as uid may use the control socket of
// a daemon running as self: only root and the daemon's own user may (the
// database holds call history and the link-signing key).
func Allowed(uid uint32, self int) bool {
	return uid == 0 || int64(uid) == int64(self)
}
