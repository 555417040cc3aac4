package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// ErrNotRunning means no process serves the socket: it does not exist, or
// nobody accepts on it (a callgate that died left it).
var ErrNotRunning = errors.New("no callgate answers on the control socket")

// idleTimeout is how long the client waits for the daemon's next bytes.
const idleTimeout = 60 * time.Second

func dial(ctx context.Context, path string, cmd string) (*net.UnixConn, *bufio.Reader, string, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, nil, "", fmt.Errorf("%s: %w", path, ErrNotRunning)
		}
		if errors.Is(err, syscall.EACCES) {
			return nil, nil, "", fmt.Errorf("control socket: %w (only root and the service's user may use it)", err)
		}
		return nil, nil, "", fmt.Errorf("control socket: %w", err)
	}
	c := conn.(*net.UnixConn)
	_ = c.SetDeadline(time.Now().Add(idleTimeout))
	// A refusal may come, and the server close, before the request is
	// written: the answer is still there to read.
	_, werr := fmt.Fprintf(c, "%s %s\n", Protocol, cmd)
	br := bufio.NewReaderSize(idleReader{c}, frameSize)
	line, err := readLine(br, maxStatus)
	if err != nil {
		c.Close()
		if werr != nil {
			err = werr
		}
		return nil, nil, "", fmt.Errorf("control socket %s: no answer: %w", path, err)
	}
	text, err := parseStatus(line)
	if err != nil {
		c.Close()
		return nil, nil, "", err
	}
	return c, br, text, nil
}

// Ping asks the daemon at path whether it runs; it returns its answer
// ("callgate pid N").
func Ping(ctx context.Context, path string) (string, error) {
	c, _, text, err := dial(ctx, path, CmdPing)
	if err != nil {
		return "", err
	}
	c.Close()
	return text, nil
}

// Backup has the daemon at path copy its database to w and returns the
// bytes written. The copy is complete and as sent when it returns nil: the
// count and CRC-32C the daemon sends last are checked.
func Backup(ctx context.Context, path string, w io.Writer) (int64, error) {
	c, br, _, err := dial(ctx, path, CmdBackup)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	n, err := readStream(br, w)
	if err != nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return n, err
}

// idleReader fails a read that gets nothing for idleTimeout.
type idleReader struct{ c net.Conn }

func (r idleReader) Read(p []byte) (int, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(idleTimeout))
	return r.c.Read(p)
}
