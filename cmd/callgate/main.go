// Command callgate is the office telephony gateway daemon.
//
// Exit codes: 0 success; 1 invalid configuration; 2 usage error; 3 the
// daemon could not start or failed while running (e.g. the database is
// locked by another instance, or a port is taken); 65 the database is
// damaged, or missing or empty where one existed (see check-db, repair and
// run -init; systemd does not restart on it), or a file given to restore is
// not a usable backup.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	// The zone database is built in: an appliance may run where the
	// system has no tzdata, and its zones (console, CRMs) must still load.
	_ "time/tzdata"

	"callgate/gateway"
	"callgate/gateway/config"
	"callgate/gateway/demo"
	"callgate/gateway/sipstack"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitConfig  = 1
	exitUsage   = 2
	exitRuntime = 3
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage: callgate COMMAND [flags]

commands:
  run -config FILE [-init]    run the gateway (-init: start with a new empty
                              database where the old one is missing or 0 bytes)
  check-config -config FILE [-strict]
                              check a configuration file and exit; print its
                              warnings (-strict: fail on them too)
  demo [-http ADDR] [-duration D]
                              run callgate with a simulated VPBX and phones
  hash-password               read a password (on a terminal: twice, not shown;
                              else one line of stdin), print its hash for the console
  check-db [-config FILE | -db PATH]
                              check the database: buckets, record counts, damage
                              (exit 0 sound, 65 damaged, 3 in use by a running callgate)
  repair [-config FILE | -db PATH]
                              copy everything readable from a damaged database to a
                              new one; the damaged file is kept as callgate.db.damaged-TIME
  backup -config FILE -o PATH write a consistent copy of the database to PATH, from
                              the running callgate (control.socket) or, stopped, the file
  restore -config FILE -i PATH
                              put the backup PATH in place of a stopped callgate's
                              database; the old one is kept as callgate.db.before-restore
  version                     print the version
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "check-config":
		return cmdCheck(args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(args[1:], stdout, stderr)
	case "hash-password":
		return cmdHash(stdin, stdout, stderr)
	case "check-db":
		return cmdCheckDB(args[1:], stdout, stderr)
	case "repair":
		return cmdRepair(args[1:], stdout, stderr)
	case "backup":
		return cmdBackup(args[1:], stdout, stderr)
	case "restore":
		return cmdRestore(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "callgate %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "callgate: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

// configFlag parses a command's -config flag, and the flags more adds.
func configFlag(name string, args []string, stderr io.Writer, more ...func(*flag.FlagSet)) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/callgate/callgate.toml", "configuration file")
	for _, m := range more {
		m(fs)
	}
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "callgate %s: unexpected argument %q\n", name, fs.Arg(0))
		return "", false
	}
	return *path, true
}

func loadConfig(path string, stderr io.Writer) (*config.Config, int) {
	cfg, err := config.Load(path)
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			fmt.Fprintln(stderr, ce.Error())
		} else {
			fmt.Fprintf(stderr, "callgate: %v\n", err)
		}
		return nil, exitConfig
	}
	return cfg, exitOK
}

// cmdCheck prints the problems of a configuration file, or its warnings
// and "ok"; -strict refuses a file with warnings too.
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	var strict *bool
	path, ok := configFlag("check-config", args, stderr, func(fs *flag.FlagSet) {
		strict = fs.Bool("strict", false, "fail on warnings (example passwords, nobody can log in, ...)")
	})
	if !ok {
		return exitUsage
	}
	cfg, code := loadConfig(path, stderr)
	if code != exitOK {
		return code
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, w.String())
	}
	if *strict && len(cfg.Warnings) > 0 {
		fmt.Fprintf(stderr, "callgate check-config: %d warning(s), refused with -strict\n", len(cfg.Warnings))
		return exitConfig
	}
	fmt.Fprintln(stdout, "ok")
	return exitOK
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func cmdRun(args []string, stderr io.Writer) int {
	path, initDB, ok := runFlags(args, stderr)
	if !ok {
		return exitUsage
	}
	cfg, code := loadConfig(path, stderr)
	if code != exitOK {
		return code
	}
	log := newLogger(cfg, stderr)
	// Once, at start: the admin sees them in the journal; they never hold
	// a secret's value.
	for _, w := range cfg.Warnings {
		log.Warn("configuration warning", "file", w.File, "line", w.Line, "warning", w.Msg, "hint", w.Hint)
	}
	if initDB {
		if err := initDatabase(cfg.DataDir); err != nil {
			log.Error("cannot start", "error", err)
			return startFailed(err, path, stderr)
		}
	}
	hups, stopHups := reloadSignals()
	defer stopHups()
	sipstack.LibraryLog(log) // before the SIP library is first used
	g, err := gateway.New(cfg, log)
	if err != nil {
		log.Error("cannot start", "error", err)
		return startFailed(err, path, stderr)
	}
	ctx, stop := stopSignals(g.StopNow)
	defer stop()
	go serveReloads(ctx, hups, func() { _ = g.Reload(path) })
	if err := g.Run(ctx); err != nil {
		log.Error("stopped with error", "error", err)
		return exitRuntime
	}
	return exitOK
}

// stopSignals returns a context that ends at the first SIGINT or SIGTERM
// (callgate then lets calls finish for calls.shutdown_grace); a second one
// calls now, which hangs up what is left at once.
func stopSignals(now func()) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-done:
			return
		}
		select {
		case <-sigs:
			now()
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	httpAddr := fs.String("http", "127.0.0.1:8080", "address of the HTTP API and console (port 0: any free port)")
	duration := fs.Duration("duration", 0, "stop after this long and print a summary (0: until interrupted)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	if err := demo.Run(ctx, demo.Options{HTTP: *httpAddr, Out: stdout, Log: stderr}); err != nil {
		var inUse *demo.HTTPInUseError
		if errors.As(err, &inUse) {
			fmt.Fprintf(stderr, "callgate demo: %s\n", portAdvice(inUse.Addr))
			return exitRuntime
		}
		fmt.Fprintf(stderr, "callgate demo: %v\n", err)
		return exitRuntime
	}
	return exitOK
}

// portAdvice tells what to do when the demo's HTTP address is taken: the
// flag that chooses another, with the same host.
func portAdvice(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%s is in use: choose another address with -http HOST:PORT", addr)
	}
	hp := net.JoinHostPort(host, "PORT")
	return fmt.Sprintf("port %s is in use: choose another with -http %s (-http %s picks a free one)", port, hp, net.JoinHostPort(host, "0"))
}
