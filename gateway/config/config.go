// Package config reads callgate's TOML configuration strictly: an unknown key,
// a value of the wrong type or an invalid value is reported as FILE:LINE with a
// hint, and secrets may be kept in separate files (*_file keys).
package config

import (
	"fmt"
	"time"
)

// Config is the whole configuration file.
type Config struct {
	// DataDir holds the database (callgate.db) and, by default, recordings.
	DataDir string `toml:"data_dir"`

	Log       Log        `toml:"log"`
	SIP       SIP        `toml:"sip"`
	Media     Media      `toml:"media"`
	Recording Recording  `toml:"recording"`
	Upstream  Upstream   `toml:"upstream"`
	Calls     Calls      `toml:"calls"`
	HTTP      HTTP       `toml:"http"`
	Employees []Employee `toml:"employee"`
	Desks     []Desk     `toml:"desk"`
	Groups    []Group    `toml:"group"`
	CRM       CRM        `toml:"crm"`
	Routing   Routing    `toml:"routing"`
	Mango     Mango      `toml:"mango"`
	Console   Console    `toml:"console"`
	Dial      Dial       `toml:"dial"`
	DNS       DNS        `toml:"dns"`
	Control   Control    `toml:"control"`
	Backup    Backup     `toml:"backup"`
	Archive   Archive    `toml:"archive"`

	// File is the path the configuration was read from (for messages).
	File string `toml:"-"`
	// Warnings are what is allowed but most likely wrong or unsafe, such
	// as the example passwords left in (see Problem.Warning).
	Warnings []Problem `toml:"-"`
}

// Log configures the structured log written to stderr (journald).
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text or json
}

// SIP configures the listeners for phones and the registrar.
type SIP struct {
	Listen            []ListenAddr `toml:"listen"`
	Advertise         IP           `toml:"advertise"`
	Realm             string       `toml:"realm"`
	AllowNetworks     Networks     `toml:"allow_networks"`
	DigestAlgorithms  []string     `toml:"digest_algorithms"`
	NonceLifetime     Duration     `toml:"nonce_lifetime"`
	MinExpires        Duration     `toml:"min_expires"`
	MaxExpires        Duration     `toml:"max_expires"`
	DefaultExpires    Duration     `toml:"default_expires"`
	MaxContacts       int          `toml:"max_contacts"`
	KeepaliveInterval Duration     `toml:"keepalive_interval"`
	TCPMaxPerIP       int          `toml:"tcp_max_per_ip"`   // SIP TCP connections one IP may hold; 0: no cap
	TCPIdleTimeout    Duration     `toml:"tcp_idle_timeout"` // close silent connections without registration or call; 0: never
	UserAgent         string       `toml:"user_agent"`
	Ban               Ban          `toml:"ban"`
	// ScannerUserAgents are User-Agent substrings (case-insensitive) of
	// SIP scanners, whose requests are dropped without an answer; an empty
	// list turns the check off.
	ScannerUserAgents []string `toml:"scanner_user_agents"`
}

// Ban configures brute-force protection of digest authentication.
type Ban struct {
	MaxFailures      int      `toml:"max_failures"`
	MaxFailuresPerIP int      `toml:"max_failures_per_ip"`
	Window           Duration `toml:"window"`
	Duration         Duration `toml:"duration"`
}

// Media configures the RTP relay.
type Media struct {
	RTPPorts          PortRange `toml:"rtp_ports"`
	Bind              IP        `toml:"bind"`
	Advertise         IP        `toml:"advertise"`
	UpstreamAdvertise IP        `toml:"upstream_advertise"`
	Timeout           Duration  `toml:"timeout"`
	// WebRTCPort is the UDP port every browser phone's media arrives on
	// (ICE, DTLS-SRTP); 0 is a free port chosen at start.
	WebRTCPort int `toml:"webrtc_port"`
}

// Calls configures call handling.
type Calls struct {
	RingTimeout   Duration `toml:"ring_timeout"`
	DefaultRegion string   `toml:"default_region"`
	// ShutdownGrace is how long a stopping callgate lets calls in progress
	// finish (refusing new ones) before it hangs up the rest.
	ShutdownGrace Duration `toml:"shutdown_grace"`
}

// Routing configures smart routing: an inbound call from a client the CRM
// knows rings the client's responsible manager first.
type Routing struct {
	// CRMBudget is the longest a call waits for the CRM's answer.
	CRMBudget Duration `toml:"crm_budget"`
	// ResponsibleTimeout is how long the responsible manager rings before
	// the account's normal target does.
	ResponsibleTimeout Duration `toml:"responsible_timeout"`
	// CacheTTL is how long an answer is used without asking again.
	CacheTTL Duration `toml:"cache_ttl"`
}

// Recording configures local call recording.
type Recording struct {
	Enabled   bool     `toml:"enabled"`
	Dir       string   `toml:"dir"`
	Retention Duration `toml:"retention"`
	Internal  bool     `toml:"internal"`
	MinFree   Size     `toml:"min_free"`
	// Format is what a leg's recording becomes once it is complete:
	// "opus" (Ogg Opus, stereo, about 7 MB per call-hour) or "wav" (the
	// G.711 WAV as recorded, 57.6 MB per call-hour).
	Format string `toml:"format"`
}

// Upstream configures the registrations with the cloud VPBX.
type Upstream struct {
	Registrar       UpstreamAddr `toml:"registrar"`
	Proxy           UpstreamAddr `toml:"proxy"`
	Domain          string       `toml:"domain"`
	TrustedSources  Sources      `toml:"trusted_sources"`
	Expires         Duration     `toml:"expires"`
	RegisterTimeout Duration     `toml:"register_timeout"`
	// FailoverTimeout is how long a REGISTER or INVITE waits for any
	// answer from one of the VPBX's addresses before the next is tried.
	FailoverTimeout Duration  `toml:"failover_timeout"`
	RetryMin        Duration  `toml:"retry_min"`
	RetryMax        Duration  `toml:"retry_max"`
	Accounts        []Account `toml:"account"`
}

// Account is one SIP account of the VPBX that callgate registers.
type Account struct {
	User         string `toml:"user"`
	AuthUser     string `toml:"auth_user"`
	Password     string `toml:"password"`
	PasswordFile string `toml:"password_file"`
	Employee     string `toml:"employee"`
	Group        string `toml:"group"`
	Number       string `toml:"number"`
	// Autocreate is what CRMs create for a caller they do not know:
	// "none", "contact" or "contact+deal".
	Autocreate string `toml:"autocreate"`
	// CRMExclude keeps this trunk's calls out of every CRM.
	CRMExclude bool `toml:"crm_exclude"`
	// RetailCRMSite is the RetailCRM store (site code) this trunk's calls
	// belong to; empty: crm.retailcrm.site.
	RetailCRMSite string `toml:"retailcrm_site"`
	// Program is the Megaplan deal scheme for deals auto-created from
	// this trunk's calls.
	Program int `toml:"program"`
	// Source names the advertising channel of this number (static call
	// tracking); the number itself when empty.
	Source string `toml:"source"`
	// Tracking is "static" or "dynamic" (a Mango dynamic call-tracking
	// number: the visitor's UTM data is fetched from Mango's API).
	Tracking string `toml:"tracking"`
}

// Group is a ring group: calls to an account pointing at it ring its
// members all at once or one after another.
type Group struct {
	ID          string   `toml:"id"`
	Strategy    string   `toml:"strategy"` // "ring-all" or "sequential"
	Members     []string `toml:"members"`  // employee ids
	RingTimeout Duration `toml:"ring_timeout"`
	// Dial overrides the dial rules and limits for the group's members.
	Dial *DialRules `toml:"dial"`
}

// HTTP configures the API, health and metrics listener.
type HTTP struct {
	Listen string `toml:"listen"`
	// APITokens are admin tokens; [[http.token]] adds tokens with a scope.
	APITokens     []string   `toml:"api_tokens"`
	APITokensFile string     `toml:"api_tokens_file"`
	Tokens        []APIToken `toml:"token"`
	TLSCert       string     `toml:"tls_cert"`
	TLSKey        string     `toml:"tls_key"`
	// PublicURL is how CRMs reach this API (through the tunnel); signed
	// recording links are built on it.
	PublicURL string `toml:"public_url"`
	// LinkTTL is how long a signed recording link stays valid.
	LinkTTL Duration `toml:"link_ttl"`
	// RecordingAccess is what an employee token may fetch: "own" calls
	// (default) or "all".
	RecordingAccess string `toml:"recording_access"`
	// TrustedProxies are the networks of reverse proxies (the tunnel's end
	// on this host) whose ProxyHeader names the real client; failed logins
	// and tokens are counted per client. Default: loopback.
	TrustedProxies Networks `toml:"trusted_proxies"`
	// ProxyHeader is the header the proxies write: "X-Forwarded-For" or
	// "Forwarded" (RFC 7239).
	ProxyHeader string `toml:"proxy_header"`
	// ReadTimeout bounds reading a request with its body, WriteTimeout
	// writing the answer (the event stream, recordings and transfers set
	// their own), IdleTimeout a keep-alive connection between requests.
	ReadTimeout    Duration `toml:"read_timeout"`
	WriteTimeout   Duration `toml:"write_timeout"`
	IdleTimeout    Duration `toml:"idle_timeout"`
	MaxHeaderBytes int      `toml:"max_header_bytes"`
	// MaxConnsPerIP caps the connections one client (not a trusted
	// proxy) holds open; more are closed as they come. 0: no cap.
	MaxConnsPerIP int `toml:"max_conns_per_ip"`
}

// APIToken is a bearer token with a scope: "admin", "employee:<id>" or
// "crm:<name>".
type APIToken struct {
	Scope     string `toml:"scope"`
	Token     string `toml:"token"`
	TokenFile string `toml:"token_file"`
}

// Employee is a person with one or two extensions (phones/lines).
type Employee struct {
	ID              string   `toml:"id"`
	Name            string   `toml:"name"`
	Extensions      []string `toml:"extensions"`
	SIPPassword     string   `toml:"sip_password"`
	SIPPasswordFile string   `toml:"sip_password_file"`
	// RetailCRMUser is the employee's user id in RetailCRM (0: not mapped;
	// their calls are not sent there).
	RetailCRMUser int `toml:"retailcrm_user"`
	// MegaplanUser is the employee's Employee id in Megaplan (0: not
	// mapped).
	MegaplanUser int `toml:"megaplan_user"`
	// PasswordHash is the bcrypt hash of the employee's console password
	// (callgate hash-password); empty: no console login.
	PasswordHash string `toml:"password_hash"`
	// Role in the console: "employee", "manager" (sees everyone's calls)
	// or "admin" (and the admin page).
	Role string `toml:"role"`
	// ShiftPIN logs the employee in at a desk phone: *77*<pin>.
	ShiftPIN string `toml:"shift_pin"`
	// Dial overrides the dial rules and limits for this employee.
	Dial *DialRules `toml:"dial"`
}

// Desk is a shared phone: its extension follows whoever logs in there for
// their shift (from the console or by dialling *77*<pin> on it).
type Desk struct {
	Extension       string `toml:"extension"`
	Name            string `toml:"name"`
	SIPPassword     string `toml:"sip_password"`
	SIPPasswordFile string `toml:"sip_password_file"`
}

// Console configures the web console.
type Console struct {
	// Visibility is whose calls employees see: "own" or "all".
	Visibility string `toml:"visibility"`
	// SessionTTL is how long a console login lasts without use.
	SessionTTL Duration `toml:"session_ttl"`
	// TimeZone is the office's zone for days in statistics.
	TimeZone Zone `toml:"time_zone"`
	// BusinessHours ("09:00-18:00") on BusinessDays ("mon".."sun") make
	// missed calls outside them show "out of hours" (empty: none).
	BusinessHours string   `toml:"business_hours"`
	BusinessDays  []string `toml:"business_days"`
}

// OutOfHours returns whether a time is outside the configured business
// hours, or nil when none are configured. The configuration must be valid.
func (c Console) OutOfHours() func(time.Time) bool {
	from, to, ok := c.hours()
	if !ok {
		return nil
	}
	loc := c.TimeZone.Location()
	days := map[time.Weekday]bool{}
	for _, d := range c.BusinessDays {
		days[weekdays[d]] = true
	}
	return func(t time.Time) bool {
		l := t.In(loc)
		m := l.Hour()*60 + l.Minute()
		return !days[l.Weekday()] || m < from || m >= to
	}
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// hours parses BusinessHours into minutes of the day.
func (c Console) hours() (int, int, bool) {
	var h1, m1, h2, m2 int
	if c.BusinessHours == "" {
		return 0, 0, false
	}
	if n, err := fmt.Sscanf(c.BusinessHours, "%d:%d-%d:%d", &h1, &m1, &h2, &m2); err != nil || n != 4 ||
		h1 < 0 || h1 > 23 || m1 < 0 || m1 > 59 || h2 < 0 || h2 > 24 || m2 < 0 || m2 > 59 || h1*60+m1 >= h2*60+m2 {
		return 0, 0, false
	}
	return h1*60 + m1, h2*60 + m2, true
}

// CRM configures the outbound-only CRM connectors.
type CRM struct {
	RetailCRM RetailCRM `toml:"retailcrm"`
	Megaplan  Megaplan  `toml:"megaplan"`
}

// Megaplan is the Megaplan connector (API v3).
type Megaplan struct {
	Enabled      bool   `toml:"enabled"`
	URL          string `toml:"url"`      // https://{account}.megaplan.ru
	Username     string `toml:"username"` // the API user's login
	Password     string `toml:"password"`
	PasswordFile string `toml:"password_file"`
	// RPS is the request rate callgate keeps to (Megaplan publishes none).
	RPS float64 `toml:"rps"`
	// Poll is how often Megaplan is asked for clients created since the
	// last look, to attach their earlier calls.
	Poll     Duration `toml:"poll"`
	Exclude  []string `toml:"exclude"`
	RetryMax Duration `toml:"retry_max"`
	// SendRecordings puts links to the calls' recordings in Megaplan
	// (default true).
	SendRecordings bool `toml:"send_recordings"`
}

// Mango is the Mango Office VPBX HTTP API, used for dynamic call tracking.
type Mango struct {
	URL         string `toml:"url"`
	APIKey      string `toml:"api_key"`
	APIKeyFile  string `toml:"api_key_file"`
	APISalt     string `toml:"api_salt"`
	APISaltFile string `toml:"api_salt_file"`
	// Budget is how long a CRM popup waits for the visitor's data; the
	// call itself never waits.
	Budget Duration `toml:"budget"`
}

// RetailCRM is the RetailCRM connector (API v5).
type RetailCRM struct {
	Enabled    bool   `toml:"enabled"`
	URL        string `toml:"url"` // https://{account}.retailcrm.ru
	APIKey     string `toml:"api_key"`
	APIKeyFile string `toml:"api_key_file"`
	Site       string `toml:"site"`        // shop code for calls
	ModuleCode string `toml:"module_code"` // integration module instance code
	TimeZone   Zone   `toml:"time_zone"`   // the account's zone for dates
	// Exclude lists employees whose calls are never sent.
	Exclude []string `toml:"exclude"`
	// RetryMax caps the wait between delivery attempts while RetailCRM is
	// down or busy.
	RetryMax Duration `toml:"retry_max"`
	// SendRecordings puts links to the calls' recordings in RetailCRM
	// (default true); false keeps recordings out of it.
	SendRecordings bool `toml:"send_recordings"`
}

// Duration is a time.Duration written as a Go duration string ("30s", "8760h").
type Duration time.Duration

// UnmarshalText parses a Go duration string. A TOML integer never gets
// here (go-toml stores it as nanoseconds): Parse refuses integers for
// durations before decoding.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%w (hint: %s)", err, durationHint(string(b)))
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Defaults returns a configuration with every optional key at its default.
func Defaults() Config {
	control, backup := backupDefaults()
	return Config{
		Control: control, Backup: backup, Archive: archiveDefaults(),
		DataDir: "/var/lib/callgate",
		Log:     Log{Level: "info", Format: "text"},
		SIP: SIP{
			Listen:            []ListenAddr{parseListen("udp:0.0.0.0:5060"), parseListen("tcp:0.0.0.0:5060")},
			Realm:             "callgate",
			AllowNetworks:     networks("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128", "fc00::/7"),
			DigestAlgorithms:  []string{"MD5"},
			NonceLifetime:     Duration(60 * time.Second),
			MinExpires:        Duration(60 * time.Second),
			MaxExpires:        Duration(3600 * time.Second),
			DefaultExpires:    Duration(600 * time.Second),
			MaxContacts:       5,
			KeepaliveInterval: Duration(30 * time.Second),
			TCPMaxPerIP:       64,
			TCPIdleTimeout:    Duration(3 * time.Minute),
			UserAgent:         "callgate",
			Ban: Ban{
				MaxFailures:      5,
				MaxFailuresPerIP: 50,
				Window:           Duration(5 * time.Minute),
				Duration:         Duration(15 * time.Minute),
			},
			ScannerUserAgents: []string{"friendly-scanner", "sipvicious", "sipcli", "VaxSIPUserAgent", "sip-scan", "iWar", "SIPScan", "pplsip"},
		},
		Media:     Media{RTPPorts: parsePortRange("20000-20999"), Bind: parseIP("0.0.0.0"), Timeout: Duration(60 * time.Second)},
		Recording: Recording{Enabled: true, Retention: Duration(8760 * time.Hour), MinFree: parseSize("1GiB"), Format: "opus"},
		Calls:     Calls{RingTimeout: Duration(30 * time.Second), DefaultRegion: "RU", ShutdownGrace: Duration(30 * time.Second)},
		Dial:      Dial{PerLine: 2},
		Upstream: Upstream{
			Expires:         Duration(300 * time.Second),
			RegisterTimeout: Duration(10 * time.Second),
			FailoverTimeout: Duration(2 * time.Second),
			RetryMin:        Duration(2 * time.Second),
			RetryMax:        Duration(5 * time.Minute),
		},
		HTTP: HTTP{Listen: "127.0.0.1:8080", LinkTTL: Duration(7 * 24 * time.Hour), RecordingAccess: "own",
			TrustedProxies: networks("127.0.0.0/8", "::1/128"), ProxyHeader: "X-Forwarded-For",
			ReadTimeout: Duration(30 * time.Second), WriteTimeout: Duration(60 * time.Second), IdleTimeout: Duration(2 * time.Minute),
			MaxHeaderBytes: 64 << 10, MaxConnsPerIP: 128},
		Routing: Routing{CRMBudget: Duration(300 * time.Millisecond), ResponsibleTimeout: Duration(15 * time.Second), CacheTTL: Duration(10 * time.Minute)},
		CRM: CRM{RetailCRM: RetailCRM{ModuleCode: "callgate", TimeZone: ParseZone("Europe/Moscow"), RetryMax: Duration(5 * time.Minute), SendRecordings: true},
			Megaplan: Megaplan{RPS: 3, Poll: Duration(time.Minute), RetryMax: Duration(5 * time.Minute), SendRecordings: true}},
		Mango: Mango{URL: "https://app.mango-office.ru/vpbx/", Budget: Duration(time.Second)},
		Console: Console{Visibility: "own", SessionTTL: Duration(12 * time.Hour), TimeZone: ParseZone("Europe/Moscow"),
			BusinessDays: []string{"mon", "tue", "wed", "thu", "fri"}},
	}
}
