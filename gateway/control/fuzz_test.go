package control

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzParseRequest: any request line is a known command or ErrProtocol.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"callgate-control/1 ping", "callgate-control/1 backup", "callgate-control/1 ", "callgate-control/1",
		" ", "callgate-control/1 backup\x00", "callgate-control/1 ping ping", "GET / HTTP/1.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := ParseRequest(line)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("%q: %v is not ErrProtocol", line, err)
			}
			return
		}
		if line != Protocol+" "+cmd {
			t.Fatalf("%q accepted as %q", line, cmd)
		}
	})
}

// FuzzReadStream feeds the client whatever a daemon (or anything else on
// the socket) might send: it never panics, never accepts more bytes than
// arrived, and accepts a stream only with a matching trailer. The data is
// also sent through the writer, which must round-trip it.
func FuzzReadStream(f *testing.F) {
	var good bytes.Buffer
	sw := newStreamWriter(&good)
	sw.Write([]byte("a bbolt page"))
	sw.finish(nil)
	f.Add(good.Bytes())
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte("\x00\x00\x00\x00error disk read error\n"))
	f.Add([]byte("\x00\x00\x00\x02ab\x00\x00\x00\x00end 2 00\n"))
	f.Add([]byte("\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, wire []byte) {
		var out bytes.Buffer
		n, err := readStream(bufio.NewReader(bytes.NewReader(wire)), &out)
		if n != int64(out.Len()) || n > int64(len(wire)) {
			t.Fatalf("n=%d, %d written, %d on the wire", n, out.Len(), len(wire))
		}
		if err == nil && !bytes.Contains(wire, []byte("end ")) {
			t.Fatalf("accepted without a trailer: %q", wire)
		}
		var enc bytes.Buffer
		w := newStreamWriter(&enc)
		if _, err := w.Write(wire); err != nil {
			t.Fatal(err)
		}
		if err := w.finish(nil); err != nil {
			t.Fatal(err)
		}
		var back bytes.Buffer
		if _, err := readStream(bufio.NewReader(&enc), &back); err != nil || !bytes.Equal(back.Bytes(), wire) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzStatusLine: the client's reading of a status line never panics and
// reads no more than maxStatus bytes.
func FuzzStatusLine(f *testing.F) {
	for _, s := range []string{"ok\n", "ok callgate pid 1\n", "error busy: another backup is in progress\n", "error\n", "okay\n",
		strings.Repeat("o", 2000) + "\n", "ok"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(b), 16)
		line, err := readLine(r, maxStatus)
		if err != nil {
			if !errors.Is(err, ErrProtocol) && !errors.Is(err, io.EOF) {
				t.Fatalf("%v", err)
			}
			return
		}
		if len(line) >= maxStatus || strings.Contains(line, "\n") {
			t.Fatalf("line %d bytes", len(line))
		}
		_, _ = parseStatus(line)
	})
}
