// Package reload applies a configuration file read again while callgate
// runs (SIGHUP, systemctl reload): it works out which changed keys need a
// restart (Effective), hands the rest to the parts that hold them, in an
// order that keeps every call and every valid registration, and reports
// the outcome in the log and in metrics. A file with problems changes
// nothing. The parts swap what they hold (an immutable snapshot behind an
// atomic pointer, or a setter); nothing is rebuilt, so calls in progress
// keep the routes, media and records they were given.
package reload

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"callgate/gateway/api"
	"callgate/gateway/config"
	"callgate/internal/aside"
	"callgate/sip/location"
	"callgate/sip/registrar"
	"callgate/sip/sipnet"
	"callgate/sip/trunk"

	"github.com/prometheus/client_golang/prometheus"
)

// The parts that take new values. Each is small and lives here, with the
// one that uses it; a nil part is skipped (no HTTP API, no upstream).
type (
	// Directory is the people and desks (directory.Directory); Replace
	// returns the extensions that no longer exist.
	Directory interface {
		Replace(cfg *config.Config) (gone []string)
	}
	// Bindings is the registrar's location table.
	Bindings interface {
		Modify(aor string, now time.Time, fn func([]location.Binding) ([]location.Binding, error)) ([]location.Binding, error)
	}
	// Registrar takes the admitted networks and expiry limits.
	Registrar interface{ SetConfig(registrar.Config) }
	// Phones is the SIP stack's admission of phones' networks.
	Phones interface{ SetPhones(sipnet.Networks) }
	// Router is call routing with the dial rules.
	Router interface{ Reload(*config.Config) }
	// Calls is the B2BUA.
	Calls interface {
		SetAccounts(users map[string]bool)
		SetRingTimeout(time.Duration)
	}
	// Model is the call model (trunk numbers and tracking per account).
	Model interface{ SetAccounts([]config.Account) }
	// Trunk is the upstream registrations.
	Trunk interface{ SetAccounts([]trunk.Account) }
	// CRM is the CRM link's mappings and exclusions.
	CRM interface{ Reload(*config.Config) }
	// Tokens are the API's tokens.
	Tokens interface {
		Replace(admin []string, scoped ...api.Token)
	}
	// Sessions are the console's accounts.
	Sessions interface {
		Replace(accounts []api.Account, names map[string]string, allVisible bool)
	}
	// Recordings take retention and min_free.
	Recordings interface {
		SetLimits(retention time.Duration, minFree uint64)
	}
)

// Parts are the holders of configuration a reload reaches.
type Parts struct {
	Directory  Directory
	Bindings   Bindings
	Registrar  Registrar
	Phones     Phones
	Router     Router
	Calls      Calls
	Model      Model
	Trunk      Trunk // nil: callgate started without upstream accounts
	CRM        CRM
	Tokens     Tokens   // nil without the HTTP API
	Sessions   Sessions // nil without the HTTP API
	Recordings Recordings
}

// Result is what a reload did.
type Result struct {
	// NeedsRestart are the changed keys that keep their running value.
	NeedsRestart []string
	// Gone are the extensions no longer configured; Unbound how many of
	// their phones' registrations were removed.
	Gone    []string
	Unbound int
	// EmployeesAdded and EmployeesRemoved count employees by id;
	// AccountsAdded and AccountsRemoved upstream accounts by user.
	EmployeesAdded, EmployeesRemoved int
	AccountsAdded, AccountsRemoved   int
	// Took is the time it took to apply (after reading the file).
	Took time.Duration
}

// Reloader holds the running configuration and applies new ones, one at a
// time.
type Reloader struct {
	log   *slog.Logger
	hours BusinessHours
	now   func() time.Time

	total *prometheus.CounterVec
	last  prometheus.Gauge

	mu    sync.Mutex
	cur   *config.Config
	parts Parts
}

// New returns a reloader for the configuration callgate started with.
// Attach gives it the parts once they are built.
func New(cfg *config.Config, log *slog.Logger) *Reloader {
	r := &Reloader{log: log, cur: cfg, now: time.Now,
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callgate_config_reload_total",
			Help: "Configuration reloads by result: ok (applied, maybe with keys that need a restart) or error (the file was refused, nothing changed)."},
			[]string{"result"}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{Name: "callgate_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration in force was loaded: at start or by the last successful reload (Unix time)."})}
	r.total.WithLabelValues("ok")
	r.total.WithLabelValues("error")
	r.last.Set(float64(r.now().UnixNano()) / 1e9)
	r.hours.Set(cfg.Console)
	return r
}

// Attach gives the reloader the parts to reach.
func (r *Reloader) Attach(p Parts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.parts = p
}

// OutOfHours tells missed calls outside business hours as the
// configuration in force says (the API's OutOfHours).
func (r *Reloader) OutOfHours(t time.Time) bool { return r.hours.OutOfHours(t) }

// Collectors are callgate_config_reload_total and
// callgate_config_last_reload_success_timestamp_seconds.
func (r *Reloader) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.total, r.last}
}

// Load reads the file at path as check-config does and applies it. A file
// that cannot be read or has problems changes nothing: each problem is
// logged with its FILE:LINE, counted as an error, and returned.
func (r *Reloader) Load(path string) error {
	var (
		next *config.Config
		read time.Duration
		err  error
	)
	aside.Run(func() {
		start := r.now()
		next, err = config.Load(path)
		read = r.now().Sub(start)
		if err == nil {
			r.apply(next, read)
		}
	})
	if err != nil {
		r.total.WithLabelValues("error").Inc()
		var ce *config.Error
		if errors.As(err, &ce) {
			for _, p := range ce.Problems {
				r.log.Error("configuration problem", "problem", p.String())
			}
		}
		r.log.Error("configuration reload refused; the running configuration stays", "file", path, "error", firstLine(err))
		return fmt.Errorf("reload %s: %w", path, err)
	}
	return nil
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// Apply puts a valid configuration in force, as far as it can change while
// running, and logs one line: "configuration reloaded", or "configuration
// reloaded; needs restart" naming the keys that keep their running value.
// The order keeps calls and registrations: who may register changes
// first (so a removed phone cannot register again once its bindings are
// gone), then routes, then the accounts the trunk registers (new accounts
// are routable before the VPBX can call them), then the rest.
func (r *Reloader) Apply(next *config.Config) Result { return r.apply(next, 0) }

// apply is Apply of a file that took read to read and check.
func (r *Reloader) apply(next *config.Config, read time.Duration) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := r.now()
	p := r.parts
	eff, restart := Effective(r.cur, next, p.Trunk != nil)
	res := Result{NeedsRestart: restart}
	res.EmployeesAdded, res.EmployeesRemoved = added(r.cur.Employees, eff.Employees, func(e config.Employee) string { return e.ID })
	res.AccountsAdded, res.AccountsRemoved = added(r.cur.Upstream.Accounts, eff.Upstream.Accounts, func(a config.Account) string { return a.User })

	if p.Directory != nil {
		res.Gone = p.Directory.Replace(eff)
	}
	if p.Registrar != nil {
		p.Registrar.SetConfig(RegistrarConfig(eff, r.log))
	}
	if p.Phones != nil {
		p.Phones.SetPhones(eff.SIP.AllowNetworks.Prefixes())
	}
	if p.Bindings != nil {
		res.Unbound = unbind(p.Bindings, res.Gone, start)
	}
	if p.Router != nil {
		p.Router.Reload(eff)
	}
	if p.Calls != nil {
		p.Calls.SetAccounts(UpstreamUsers(eff))
		p.Calls.SetRingTimeout(eff.Calls.RingTimeout.D())
	}
	if p.Model != nil {
		p.Model.SetAccounts(eff.Upstream.Accounts)
	}
	if p.Trunk != nil {
		p.Trunk.SetAccounts(TrunkAccounts(eff))
	}
	if p.CRM != nil {
		p.CRM.Reload(eff)
	}
	if p.Tokens != nil {
		p.Tokens.Replace(eff.HTTP.APITokens, ScopedTokens(eff)...)
	}
	if p.Sessions != nil {
		p.Sessions.Replace(ConsoleAccounts(eff), Names(eff), eff.Console.Visibility == "all")
	}
	if p.Recordings != nil {
		p.Recordings.SetLimits(eff.Recording.Retention.D(), eff.Recording.MinFree.Bytes)
	}
	r.hours.Set(eff.Console)
	r.cur = eff
	res.Took = r.now().Sub(start)

	r.total.WithLabelValues("ok").Inc()
	r.last.Set(float64(r.now().UnixNano()) / 1e9)
	attrs := []any{"file", next.File, "read", read.Round(time.Microsecond).String(), "took", res.Took.Round(time.Microsecond).String(),
		"employees_added", res.EmployeesAdded, "employees_removed", res.EmployeesRemoved,
		"accounts_added", res.AccountsAdded, "accounts_removed", res.AccountsRemoved,
		"extensions_removed", strings.Join(res.Gone, ","), "registrations_removed", res.Unbound}
	if len(restart) > 0 {
		r.log.Warn("configuration reloaded; needs restart", append([]any{"keys", strings.Join(restart, ",")}, attrs...)...)
	} else {
		r.log.Info("configuration reloaded", attrs...)
	}
	return res
}

// unbind removes the registrations of extensions that are gone: their
// phones can no longer be called, and cannot register again (no secret).
func unbind(b Bindings, gone []string, now time.Time) int {
	n := 0
	for _, ext := range gone {
		_, _ = b.Modify(ext, now, func(cur []location.Binding) ([]location.Binding, error) {
			n += len(cur)
			return nil, nil
		})
	}
	return n
}

// added counts the items of next not in prev, and of prev not in next, by
// key.
func added[T any](prev, next []T, key func(T) string) (in, out int) {
	had := map[string]bool{}
	for _, x := range prev {
		had[key(x)] = true
	}
	for _, x := range next {
		if !had[key(x)] {
			in++
		}
		delete(had, key(x))
	}
	return in, len(had)
}
