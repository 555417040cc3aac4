package sipstack

import (
	"fmt"

	"callgate/sip/sanity"
	"callgate/sip/sipnet"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// guardHandler puts sanity.Guard in front of h, counting its panics.
// It runs after admit's network check, so a stranger's malformed packet is
// still dropped without a word.
func (s *Stack) guardHandler(h sipgo.RequestHandler) sipgo.RequestHandler {
	return sanity.Guard(h, s.log, func(r any, attrs ...any) {
		s.panics.Add(1)
		sanity.LogPanic(s.log, r, attrs...)
	})
}

// Panics is the number of panics recovered in SIP handlers and in the
// read filter.
func (s *Stack) Panics() uint64 { return s.panics.Load() }

// guardFilter puts two things in front of a transport read filter (the
// registrar's UDP fast path runs there, on sipgo's reader goroutine): a
// datagram that cannot be SIP is dropped without a word (sipgo would log
// each at error level with its whole content), and a panic in f drops the
// datagram and is logged and counted instead of ending the process. TCP
// reads are chunks of a stream, not messages: they pass unchecked.
func (s *Stack) guardFilter(f sip.TransportReadFilter) sip.TransportReadFilter {
	return func(info sip.TransportReadProps, data []byte) (out []byte, err error) {
		if sipnet.TransportOf(info.Transport).Datagram() && !sanity.Datagram(data) {
			return nil, nil
		}
		defer func() {
			if r := recover(); r != nil {
				s.panics.Add(1)
				sanity.LogPanic(s.log, r, "source", fmt.Sprint(info.RemoteAddr), "transport", info.Transport)
				out, err = nil, nil
			}
		}()
		return f(info, data)
	}
}
