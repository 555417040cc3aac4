package sanity

import "bytes"

// maxStartLine bounds the search for the end of a datagram's first line.
const maxStartLine = 1024

// Datagram tells whether a UDP datagram can be a SIP message at all: a
// keep-alive, or a first line shaped like a request line ("METHOD URI
// SIP/x.y") or a status line ("SIP/x.y NNN ..."). Garbage fails it and can
// be dropped before sipgo's parser, which logs every failure at error level
// with the whole datagram (up to 64 KiB a line for whoever floods us).
// Requests in another SIP version pass, to be answered 505.
func Datagram(b []byte) bool {
	if len(bytes.Trim(b, "\r\n")) == 0 {
		return true // CRLF keep-alive
	}
	head := b
	if len(head) > maxStartLine {
		head = head[:maxStartLine]
	}
	end := bytes.Index(head, []byte("\r\n"))
	if end < 0 {
		return false
	}
	line := head[:end]
	if bytes.HasPrefix(line, []byte("SIP/")) {
		sp := bytes.IndexByte(line, ' ')
		return sp > 4 && len(line) >= sp+4 && isDigits(line[sp+1:sp+4]) && (len(line) == sp+4 || line[sp+4] == ' ')
	}
	sp := bytes.IndexByte(line, ' ')
	last := bytes.LastIndexByte(line, ' ')
	if sp <= 0 || last <= sp+1 {
		return false
	}
	for _, c := range line[:sp] {
		if !isToken(c) {
			return false
		}
	}
	return bytes.HasPrefix(line[last+1:], []byte("SIP/"))
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isToken: RFC 3261 §25.1 token characters.
func isToken(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return bytes.IndexByte([]byte("-.!%*_+`'~"), c) >= 0
}
