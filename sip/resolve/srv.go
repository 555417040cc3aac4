package resolve

import (
	"cmp"
	"slices"

	"github.com/miekg/dns"
)

// orderSRV puts SRV records in the order to try them (RFC 2782): lowest
// priority first; within a priority, a weighted random order, so that a
// record of weight 9 is tried first about nine times as often as one of
// weight 1, and records of weight 0 only rarely come first. A record
// whose target is "." says the service is not offered there and is left
// out. randN(n) returns a random number in [0, n).
func orderSRV(records []*dns.SRV, randN func(n int) int) []*dns.SRV {
	rest := make([]*dns.SRV, 0, len(records))
	for _, r := range records {
		if r.Target != "." && r.Target != "" {
			rest = append(rest, r)
		}
	}
	slices.SortStableFunc(rest, func(a, b *dns.SRV) int { return cmp.Compare(a.Priority, b.Priority) })
	out := make([]*dns.SRV, 0, len(rest))
	for len(rest) > 0 {
		n := 1
		for n < len(rest) && rest[n].Priority == rest[0].Priority {
			n++
		}
		out = append(out, weighted(rest[:n], randN)...)
		rest = rest[n:]
	}
	return out
}

// weighted orders records of one priority by RFC 2782's selection: the
// records of weight 0 are put at the front, then repeatedly a running sum
// of weights picks the first record whose sum reaches a random number in
// [0, total].
func weighted(group []*dns.SRV, randN func(n int) int) []*dns.SRV {
	left := make([]*dns.SRV, 0, len(group))
	for _, r := range group {
		if r.Weight == 0 {
			left = append(left, r)
		}
	}
	for _, r := range group {
		if r.Weight != 0 {
			left = append(left, r)
		}
	}
	out := make([]*dns.SRV, 0, len(group))
	for len(left) > 0 {
		total := 0
		for _, r := range left {
			total += int(r.Weight)
		}
		pick, sum, i := randN(total+1), 0, 0
		for ; i < len(left)-1; i++ {
			sum += int(left[i].Weight)
			if sum >= pick {
				break
			}
		}
		out = append(out, left[i])
		left = slices.Delete(left, i, i+1)
	}
	return out
}
