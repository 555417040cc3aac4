package main

import (
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"callgate/crm/crmtest"
)

// popups measures how long a call takes from the VPBX's INVITE to the CRM's
// popup request: RetailCRM's telephony/call/event "in" and Megaplan's POST
// callInfo, as the stand-ins receive them. Employee n is user n in both.
type popups struct {
	mu   sync.Mutex
	sent map[string]time.Time            // extension -> INVITE sent
	got  map[string]map[string]time.Time // crm -> extension -> popup arrived
	crms []string
}

// startPopups runs the CRM stand-ins at the addresses callgate is
// configured with ("" leaves one out).
func startPopups(retailAddr, megaplanAddr string) *popups {
	p := &popups{sent: map[string]time.Time{}, got: map[string]map[string]time.Time{}}
	note := func(crm, ext string) {
		now := time.Now()
		p.mu.Lock()
		if _, ok := p.got[crm][ext]; !ok {
			p.got[crm][ext] = now
		}
		p.mu.Unlock()
	}
	if retailAddr != "" {
		st, err := crmtest.NewRetailCRMAt("bench-retail-key-0123456789", retailAddr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "retailcrm stand-in:", err)
			os.Exit(1)
		}
		p.crms, p.got["retailcrm"] = append(p.crms, "retailcrm"), map[string]time.Time{}
		st.OnEvent(func(e crmtest.RetailEvent) {
			if e.Type == "in" && len(e.Codes) > 0 {
				note("retailcrm", e.Codes[0])
			}
		})
	}
	if megaplanAddr != "" {
		mp, err := crmtest.NewMegaplanAt("bench@office", "bench-megaplan-pass", 0, megaplanAddr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "megaplan stand-in:", err)
			os.Exit(1)
		}
		p.crms, p.got["megaplan"] = append(p.crms, "megaplan"), map[string]time.Time{}
		mp.OnPopup(func(c crmtest.MegaplanCall) {
			if c.ToUser != nil {
				note("megaplan", c.ToUser.ID)
			}
		})
	}
	return p
}

func (p *popups) invited(ext string, at time.Time) {
	p.mu.Lock()
	p.sent[ext] = at
	p.mu.Unlock()
}

// wait gives the last popups up to d to arrive.
func (p *popups) wait(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		p.mu.Lock()
		done := true
		for _, g := range p.got {
			done = done && len(g) >= len(p.sent)
		}
		p.mu.Unlock()
		if done {
			return
		}
	}
}

// report prints INVITE → popup request, p50 and p99, per CRM.
func (p *popups) report() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, crm := range p.crms {
		var d []time.Duration
		for ext, at := range p.sent {
			if t, ok := p.got[crm][ext]; ok {
				d = append(d, t.Sub(at))
			}
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		q := func(f float64) time.Duration {
			if len(d) == 0 {
				return 0
			}
			return d[min(len(d)-1, int(f*float64(len(d))))]
		}
		fmt.Printf("popups: crm=%s calls=%d missing=%d invite_to_popup_p50=%s p99=%s max=%s\n", crm, len(p.sent), len(p.sent)-len(d), q(0.5), q(0.99), q(1))
	}
}
