package gateway

import (
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"callgate/crm/outbox"
	"callgate/sip/guard"
	"callgate/sip/trunk"
)

// adminView is what the console's admin page shows.
type adminView struct {
	Phones     []phoneView              `json:"phones"`
	Upstream   []trunk.Status           `json:"upstream"`
	CRM        map[string]outbox.Status `json:"crm"`
	Recordings diskView                 `json:"recordings"`
	Store      storeView                `json:"store"` // the database: free space under data_dir, writes waiting
	Bans       []guard.Ban              `json:"bans"`
}

type phoneView struct {
	Extension string    `json:"extension"`
	Employee  string    `json:"employee,omitempty"`
	Source    string    `json:"source"`
	Transport string    `json:"transport"`
	UserAgent string    `json:"user_agent,omitempty"`
	Expires   time.Time `json:"expires"`
	Since     time.Time `json:"since"`
}

type diskView struct {
	Enabled   bool   `json:"enabled"`
	Dir       string `json:"dir,omitempty"`
	Files     int    `json:"files"`
	Bytes     int64  `json:"bytes"`
	FreeBytes uint64 `json:"free_bytes"`
}

// diskUsage walks the recordings at most once a minute: a year of calls
// is many files, and the page is reloaded often.
type diskUsage struct {
	mu   sync.Mutex
	at   time.Time
	last diskView
}

func (d *diskUsage) get(dir string) diskView {
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Since(d.at) < time.Minute && d.last.Dir == dir {
		// Free space is one statfs: always current, as a disk filling up
		// is what it is watched for.
		d.last.FreeBytes = freeBytesAt(dir)
		return d.last
	}
	v := diskView{Enabled: true, Dir: dir}
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(e.Name(), ".wav") {
			return nil
		}
		if info, err := e.Info(); err == nil {
			v.Files++
			v.Bytes += info.Size()
		}
		return nil
	})
	// Before the first recording the folder may not exist yet: the space
	// is that of the filesystem it will be made on.
	v.FreeBytes = freeBytesAt(dir)
	d.at, d.last = time.Now(), v
	return v
}

// adminStatus is the admin page's snapshot.
func (g *Gateway) adminStatus() any {
	now := time.Now()
	v := adminView{Phones: []phoneView{}, Upstream: []trunk.Status{}, CRM: map[string]outbox.Status{}, Bans: g.guard.Bans()}
	for _, b := range g.reg.Location().All(now) {
		p := phoneView{Extension: b.AOR, Source: b.Source, Transport: b.Transport, UserAgent: b.UserAgent, Expires: b.Expires, Since: b.Since}
		if e, ok := g.dir.ByExtension(b.AOR); ok {
			p.Employee = e.ID
		}
		v.Phones = append(v.Phones, p)
	}
	sort.Slice(v.Phones, func(i, j int) bool { return v.Phones[i].Extension < v.Phones[j].Extension })
	if g.trunk != nil {
		v.Upstream = g.trunk.Statuses()
	}
	v.CRM, _, _ = g.crm.Status("", false)
	if g.cfg.Recording.Enabled {
		v.Recordings = g.disk.get(g.cfg.Recording.Dir)
	}
	v.Store = g.storeView()
	if v.Bans == nil {
		v.Bans = []guard.Ban{}
	}
	return v
}
