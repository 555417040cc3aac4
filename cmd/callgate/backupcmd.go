package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"callgate/gateway/backup"
	"callgate/gateway/config"
	"callgate/gateway/control"
	"callgate/gateway/store"
)

// fileFlags parses `-config FILE -<name> PATH` (PATH required) and loads
// the configuration.
func fileFlags(cmd, name, what string, args []string, stderr io.Writer) (*config.Config, string, int) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", "/etc/callgate/callgate.toml", "configuration file")
	path := fs.String(name, "", what)
	if err := fs.Parse(args); err != nil {
		return nil, "", exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "callgate %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return nil, "", exitUsage
	}
	if *path == "" {
		fmt.Fprintf(stderr, "callgate %s: -%s PATH is needed (%s)\n", cmd, name, what)
		return nil, "", exitUsage
	}
	cfg, code := loadConfig(*cfgFile, stderr)
	return cfg, *path, code
}

// cmdBackup writes a consistent copy of the database to -o PATH: from the
// running daemon over its control socket, or, when none runs, from the
// database file itself. PATH is replaced only by a complete, checked copy.
func cmdBackup(args []string, stdout, stderr io.Writer) int {
	background() // first: reading a large configuration takes a while too
	cfg, out, code := fileFlags("backup", "o", "file to write the copy of the database to", args, stderr)
	if code != exitOK {
		return code
	}
	if fi, err := os.Stat(out); err == nil && fi.IsDir() {
		fmt.Fprintf(stderr, "callgate backup: %s is a directory: name the file to write, e.g. %s\n", out,
			filepath.Join(out, "callgate-"+time.Now().UTC().Format("20060102T150405Z")+".db"))
		return exitUsage
	}
	ctx, stop := signalContext()
	defer stop()
	dbPath := filepath.Join(cfg.DataDir, store.FileName)
	start := time.Now()
	var n int64
	from := "the running callgate (" + cfg.Control.Socket + ")"
	viaDaemon := cfg.Control.Socket != ""
	err := backup.WriteFile(out, 0o600, func(w io.Writer) error {
		var err error
		if viaDaemon {
			n, err = control.Backup(ctx, cfg.Control.Socket, w)
			if !errors.Is(err, control.ErrNotRunning) {
				return err
			}
		}
		// No daemon: the file itself, whose lock says if one runs anyway.
		from, viaDaemon = dbPath+" (callgate is not running)", false
		n, err = store.CopyFile(dbPath, w)
		if errors.Is(err, store.ErrLocked) && cfg.Control.Socket != "" {
			return fmt.Errorf("%w; and its control socket %s does not answer: see the log of callgate", err, cfg.Control.Socket)
		}
		if errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("%w; set control.socket so that callgate can be asked for a copy while it runs", err)
		}
		return err
	}, func(tmp string) error { _, err := store.VerifyBackup(tmp, false); return err })
	if err != nil {
		fmt.Fprintf(stderr, "callgate backup: %v\n", err)
		return exitRuntime
	}
	fmt.Fprintf(stdout, "backup of %s written to %s: %d bytes in %s\n", from, out, n, time.Since(start).Round(time.Millisecond))
	return exitOK
}

// cmdRestore puts a backup in place of the database of a stopped callgate.
func cmdRestore(args []string, stdout, stderr io.Writer) int {
	cfg, in, code := fileFlags("restore", "i", "backup file to restore", args, stderr)
	if code != exitOK {
		return code
	}
	if cfg.Control.Socket != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		text, err := control.Ping(ctx, cfg.Control.Socket)
		cancel()
		if err == nil {
			fmt.Fprintf(stderr, "callgate restore: callgate is running (%s answers: %s): stop it first (systemctl stop callgate)\n", cfg.Control.Socket, text)
			return exitRuntime
		}
	}
	rr, err := store.Restore(cfg.DataDir, in, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "callgate restore: %v\n", err)
		if errors.Is(err, store.ErrLocked) {
			fmt.Fprintln(stderr, "callgate is running: stop it first (systemctl stop callgate)")
			return exitRuntime
		}
		if errors.Is(err, store.ErrBadBackup) {
			return exitDatabase
		}
		return exitRuntime
	}
	fmt.Fprintf(stdout, "restored %s (schema %d, %d bytes) to %s\n", in, rr.Schema, rr.Size, rr.Path)
	if rr.Kept != "" {
		fmt.Fprintf(stdout, "the database it replaced is kept as %s\n", rr.Kept)
	}
	fmt.Fprintln(stdout, "recordings are not in the database: they stay in recording.dir and, with [archive], in its bucket (see README, \"Backups\"); then start callgate")
	return exitOK
}

// signalContext ends on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// backgroundNice is the CPU priority of `callgate backup`: below the
// daemon's, whose calls go on while it copies.
const backgroundNice = 10

// background lowers this process's CPU priority to backgroundNice. Linux
// keeps a nice value per thread: every thread there is now gets it, and
// threads made later inherit it from the one that makes them. (Only here,
// in a process of its own: a thread of the daemon at a lower priority would
// hold one of the Go scheduler's few Ps while the kernel keeps it waiting,
// and the calls with it.)
func background() {
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			_ = syscall.Setpriority(syscall.PRIO_PROCESS, tid, backgroundNice)
		}
	}
}
