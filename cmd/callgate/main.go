// Command callgate is the office telephony gateway daemon.
//
// Exit codes: 0 success; 1 invalid configuration; 2 usage error; 3 the
// daemon could not start or failed while running (e.g. the database is
// locked by another instance, or a port is taken); 65 the database is
// damaged, or missing or empty where one existed (see check-db, repair and
// run -init; systemd does not restart on it).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"callgate/gateway"
	"callgate/gateway/config"
	"callgate/gateway/demo"

	"golang.org/x/crypto/bcrypt"
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
  check-config -config FILE   check a configuration file and exit
  demo [-http ADDR] [-duration D]
                              run callgate with a simulated VPBX and phones
  hash-password               read a password on stdin, print its hash for the console
  check-db [-config FILE | -db PATH]
                              check the database: buckets, record counts, damage
                              (exit 0 sound, 65 damaged, 3 in use by a running callgate)
  repair [-config FILE | -db PATH]
                              copy everything readable from a damaged database to a
                              new one; the damaged file is kept as callgate.db.damaged-TIME
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

func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/callgate/callgate.toml", "configuration file")
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

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("check-config", args, stderr)
	if !ok {
		return exitUsage
	}
	if _, code := loadConfig(path, stderr); code != exitOK {
		return code
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
	if initDB {
		if err := initDatabase(cfg.DataDir); err != nil {
			log.Error("cannot start", "error", err)
			return startFailed(err, path, stderr)
		}
	}
	hups, stopHups := reloadSignals()
	defer stopHups()
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
	httpAddr := fs.String("http", "127.0.0.1:8080", "address of the HTTP API and console")
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
		fmt.Fprintf(stderr, "callgate demo: %v\n", err)
		return exitRuntime
	}
	return exitOK
}

// cmdHash reads one line (the password) and prints a bcrypt hash for
// console logins in the configuration.
func cmdHash(stdin io.Reader, stdout, stderr io.Writer) int {
	if f, ok := stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(stderr, "password: ")
		}
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		fmt.Fprintln(stderr, "callgate hash-password: no password on standard input")
		return exitUsage
	}
	pw := strings.TrimRight(line, "\r\n")
	if len(pw) < 8 {
		fmt.Fprintln(stderr, "callgate hash-password: use at least 8 characters")
		return exitUsage
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), 12)
	if err != nil {
		fmt.Fprintf(stderr, "callgate hash-password: %v\n", err)
		return exitRuntime
	}
	fmt.Fprintln(stdout, string(h))
	return exitOK
}
