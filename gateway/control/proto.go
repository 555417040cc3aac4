// Package control is callgate's local control socket: a unix socket in the
// service's RuntimeDirectory, open to root and the service's own user only
// (checked with SO_PEERCRED on every connection), through which
// `callgate backup` gets a consistent copy of the running daemon's database.
// It works with the HTTP API off, and the copy is written by the command,
// not the daemon (which may not write outside its own directories).
//
// The protocol, one request per connection:
//
//	client: "callgate-control/1 <command>\n"    command: ping or backup
//	server: "ok[ <text>]\n" or "error <text>\n"
//
// After "ok" to backup the server sends the database in frames: a 4-byte
// big-endian length (at most MaxFrame) and that many bytes; a frame of
// length 0 ends the data and is followed by "end <bytes> <crc32c hex>\n",
// or by "error <text>\n" when the copy failed part way. The count and the
// CRC-32C (Castagnoli, computed in hardware) catch a copy cut short or
// garbled on the way; the peers are root and the daemon's own user, so there
// is no one to forge a stream against.
package control

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"strconv"
	"strings"
)

// Protocol names this version of the protocol in every request.
const Protocol = "callgate-control/1"

// Commands.
const (
	CmdPing   = "ping"
	CmdBackup = "backup"
)

// Limits of what either side reads.
const (
	maxRequest = 128     // a request line
	maxStatus  = 1024    // a status or trailer line
	MaxFrame   = 1 << 20 // a frame's data
	frameSize  = 256 << 10
)

// ErrProtocol means the other side did not speak this protocol.
var ErrProtocol = errors.New("control protocol violation")

// RemoteError is an error the daemon reported.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return "callgate: " + e.Msg }

// ParseRequest reads a request line (without its newline) and returns its
// command.
func ParseRequest(line string) (string, error) {
	proto, cmd, ok := strings.Cut(line, " ")
	if !ok || proto != Protocol {
		return "", fmt.Errorf("%w: want %q, got %.40q", ErrProtocol, Protocol+" COMMAND", line)
	}
	switch cmd {
	case CmdPing, CmdBackup:
		return cmd, nil
	}
	return "", fmt.Errorf("%w: unknown command %.40q", ErrProtocol, cmd)
}

// readLine reads one line of at most max bytes (newline included) and
// returns it without the newline.
func readLine(r *bufio.Reader, max int) (string, error) {
	var b []byte
	for {
		part, err := r.ReadSlice('\n')
		b = append(b, part...)
		if len(b) > max {
			return "", fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, max)
		}
		switch {
		case err == nil:
			return string(b[:len(b)-1]), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(b) > 0:
			return "", fmt.Errorf("%w: line cut off", ErrProtocol)
		default:
			return "", err
		}
	}
}

// parseStatus reads a status line: the text after "ok", or a
// *RemoteError for "error".
func parseStatus(line string) (string, error) {
	if line == "ok" {
		return "", nil
	}
	if text, ok := strings.CutPrefix(line, "ok "); ok {
		return text, nil
	}
	if msg, ok := strings.CutPrefix(line, "error "); ok {
		return "", &RemoteError{Msg: msg}
	}
	return "", fmt.Errorf("%w: status %.40q", ErrProtocol, line)
}

// oneLine makes text safe for a status line.
func oneLine(text string) string {
	text = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, text)
	if len(text) > maxStatus-16 {
		text = text[:maxStatus-16]
	}
	return text
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// streamWriter sends what is written to it in frames.
type streamWriter struct {
	w   io.Writer
	buf []byte // 4 bytes for the length, then the frame's data
	n   int64
	h   hash.Hash32
}

func newStreamWriter(w io.Writer) *streamWriter {
	return &streamWriter{w: w, buf: make([]byte, 4, 4+frameSize), h: crc32.New(castagnoli)}
}

// ReadFrom fills frames straight from r (bbolt copies its file through
// it), a frame a read.
func (s *streamWriter) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		k, err := r.Read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+k]
		total += int64(k)
		if len(s.buf) == cap(s.buf) {
			if ferr := s.flush(); ferr != nil {
				return total, ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (s *streamWriter) Write(p []byte) (int, error) {
	done := 0
	for len(p) > 0 {
		k := min(len(p), cap(s.buf)-len(s.buf))
		s.buf = append(s.buf, p[:k]...)
		p, done = p[k:], done+k
		if len(s.buf) == cap(s.buf) {
			if err := s.flush(); err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

func (s *streamWriter) flush() error {
	data := s.buf[4:]
	if len(data) == 0 {
		return nil
	}
	binary.BigEndian.PutUint32(s.buf, uint32(len(data)))
	if _, err := s.w.Write(s.buf); err != nil {
		return err
	}
	s.h.Write(data)
	s.n += int64(len(data))
	s.buf = s.buf[:4]
	return nil
}

// finish ends the stream: "end" with the count and checksum, or the reason
// the copy failed.
func (s *streamWriter) finish(cause error) error {
	if cause == nil {
		if err := s.flush(); err != nil {
			return err
		}
	}
	trailer := fmt.Sprintf("end %d %08x\n", s.n, s.h.Sum32())
	if cause != nil {
		trailer = "error " + oneLine(cause.Error()) + "\n"
	}
	_, err := s.w.Write(append([]byte{0, 0, 0, 0}, trailer...))
	return err
}

// readStream copies a framed stream from r to w and checks its trailer: the
// count and checksum must match what arrived.
func readStream(r *bufio.Reader, w io.Writer) (int64, error) {
	h := crc32.New(castagnoli)
	out := io.MultiWriter(w, h)
	var n int64
	var head [4]byte
	buf := make([]byte, frameSize)
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return n, fmt.Errorf("%w: stream cut off after %d bytes: %v", ErrProtocol, n, err)
		}
		size := binary.BigEndian.Uint32(head[:])
		if size == 0 {
			break
		}
		if size > MaxFrame {
			return n, fmt.Errorf("%w: frame of %d bytes", ErrProtocol, size)
		}
		k, err := io.CopyBuffer(out, io.LimitReader(r, int64(size)), buf)
		if err == nil && k < int64(size) {
			err = io.EOF
		}
		n += k
		if err != nil {
			if errors.Is(err, io.EOF) {
				return n, fmt.Errorf("%w: stream cut off after %d bytes", ErrProtocol, n)
			}
			return n, err
		}
	}
	line, err := readLine(r, maxStatus)
	if err != nil {
		return n, fmt.Errorf("%w: no end of stream: %v", ErrProtocol, err)
	}
	if msg, ok := strings.CutPrefix(line, "error "); ok {
		return n, &RemoteError{Msg: msg}
	}
	f := strings.Split(line, " ")
	if len(f) != 3 || f[0] != "end" {
		return n, fmt.Errorf("%w: end of stream %.40q", ErrProtocol, line)
	}
	want, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || want != n {
		return n, fmt.Errorf("%w: %d bytes arrived, the daemon sent %.24q", ErrProtocol, n, f[1])
	}
	if f[2] != fmt.Sprintf("%08x", h.Sum32()) {
		return n, fmt.Errorf("%w: the data's CRC-32C does not match the daemon's", ErrProtocol)
	}
	return n, nil
}
