package resolve

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// hostsFile is /etc/hosts, read again when it changes: names an admin
// pins there (and localhost) resolve as they do for every other program
// on the machine (nsswitch "files dns"), without asking DNS.
type hostsFile struct {
	path string
	// check is how often the file's size and time are looked at.
	check time.Duration

	mu      sync.Mutex
	names   map[string][]netip.Addr
	mod     time.Time
	size    int64
	checked time.Time
}

// lookup returns the addresses the file gives host (IPv4 first), nil
// when it names none.
func (h *hostsFile) lookup(host string, now time.Time) []netip.Addr {
	if h == nil || h.path == "" {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.names == nil || now.Sub(h.checked) >= h.check {
		h.checked = now
		h.reload()
	}
	return h.names[canonical(host)]
}

// reload reads the file when its time or size changed; a file that cannot
// be read names nothing.
func (h *hostsFile) reload() {
	fi, err := os.Stat(h.path)
	if err != nil {
		h.names, h.mod, h.size = map[string][]netip.Addr{}, time.Time{}, -1
		return
	}
	if h.names != nil && fi.ModTime().Equal(h.mod) && fi.Size() == h.size {
		return
	}
	f, err := os.Open(h.path)
	if err != nil {
		h.names = map[string][]netip.Addr{}
		return
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, maxHostsSize))
	h.names, h.mod, h.size = parseHosts(b), fi.ModTime(), fi.Size()
}

// maxHostsSize bounds what is read of the hosts file.
const maxHostsSize = 4 << 20

// parseHosts reads a hosts file: "ADDRESS NAME [ALIAS...]" per line, "#"
// to the end of a line is a comment. Names are matched without case and
// without a trailing dot; addresses with a zone (fe80::1%eth0) are left
// out, a SIP request cannot be sent to one from callgate's sockets. Per
// name IPv4 addresses come first, each in file order.
func parseHosts(file []byte) map[string][]netip.Addr {
	out := map[string][]netip.Addr{}
	for line := range bytes.Lines(file) {
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(string(line))
		if len(fields) < 2 {
			continue
		}
		addr, err := netip.ParseAddr(fields[0])
		if err != nil || addr.Zone() != "" {
			continue
		}
		addr = addr.Unmap()
		for _, name := range fields[1:] {
			name = canonical(name)
			// "a..b" and "a.." name no host: they have an empty label
			if name == "" || strings.HasSuffix(name, ".") || strings.Contains(name, "..") || containsAddr(out[name], addr) {
				continue
			}
			out[name] = append(out[name], addr)
		}
	}
	for name, addrs := range out {
		out[name] = v4First(addrs)
	}
	return out
}

// canonical is a host name as the caches key it: lower case, no
// trailing dot.
func canonical(host string) string { return strings.ToLower(strings.TrimSuffix(host, ".")) }

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// v4First orders addresses IPv4 first (callgate's SIP sockets are
// usually IPv4), keeping the order within each family.
func v4First(addrs []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if a.Is4() {
			out = append(out, a)
		}
	}
	for _, a := range addrs {
		if !a.Is4() {
			out = append(out, a)
		}
	}
	return out
}
