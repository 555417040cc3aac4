package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"callgate/gateway/store"
)

// exitDatabase is the exit code for a database callgate will not use as it
// is (damaged, emptied, vanished). systemd/callgate.service lists it in
// RestartPreventExitStatus=, so the unit stops instead of crash-looping
// until someone runs check-db/repair or restores a backup.
const exitDatabase = 65 // EX_DATAERR

// dbPathFlags parses `-config FILE | -db PATH` and returns the database
// path and the config path it came from ("" with -db).
func dbPathFlags(name string, args []string, stderr io.Writer) (dbPath, cfgPath string, code int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", "/etc/callgate/callgate.toml", "configuration file (its data_dir holds the database)")
	db := fs.String("db", "", "database file, instead of the one in the configuration's data_dir")
	if err := fs.Parse(args); err != nil {
		return "", "", exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "callgate %s: unexpected argument %q\n", name, fs.Arg(0))
		return "", "", exitUsage
	}
	if *db != "" {
		return *db, "", exitOK
	}
	cfg, code := loadConfig(*cfgFile, stderr)
	if code != exitOK {
		return "", "", code
	}
	return filepath.Join(cfg.DataDir, store.FileName), *cfgFile, exitOK
}

func cmdCheckDB(args []string, stdout, stderr io.Writer) int {
	path, cfgPath, code := dbPathFlags("check-db", args, stderr)
	if code != exitOK {
		return code
	}
	rep, err := store.CheckFile(path)
	if err != nil {
		var de *store.DamagedError
		if errors.As(err, &de) {
			fmt.Fprintf(stdout, "database %s: %s\nresult: DAMAGED\n", path, strings.ToUpper(de.Kind))
			fmt.Fprintf(stderr, "callgate check-db: %v\n%s", err, dbAdvice(err, cfgPath))
			return exitDatabase
		}
		fmt.Fprintf(stderr, "callgate check-db: %v\n", err)
		if errors.Is(err, store.ErrLocked) {
			return exitRuntime
		}
		return exitDatabase
	}
	fmt.Fprintf(stdout, "database %s: %d bytes, page size %d, %d pages, transaction %d, schema %d\n",
		path, rep.Size, rep.PageSize, rep.Pages, rep.TxID, rep.Schema)
	for _, b := range rep.Buckets {
		fmt.Fprintf(stdout, "  bucket %-40s %d keys\n", b.Name, b.Keys)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(stdout, "  warning: %s\n", w)
	}
	if rep.Sound() {
		fmt.Fprintln(stdout, "result: ok")
		return exitOK
	}
	fmt.Fprintf(stdout, "result: DAMAGED: %d problems, %d damaged pages\n", rep.ProblemCount, rep.DamagedPages)
	for _, p := range rep.Problems {
		fmt.Fprintf(stdout, "  - %s\n", p)
	}
	if rep.ProblemCount > len(rep.Problems) {
		fmt.Fprintf(stdout, "  - ... and %d more\n", rep.ProblemCount-len(rep.Problems))
	}
	fmt.Fprint(stderr, dbAdvice(&store.DamagedError{Path: path, Kind: store.DamageCorrupt}, cfgPath))
	return exitDatabase
}

func cmdRepair(args []string, stdout, stderr io.Writer) int {
	path, _, code := dbPathFlags("repair", args, stderr)
	if code != exitOK {
		return code
	}
	rr, err := store.Repair(path, time.Now())
	if errors.Is(err, store.ErrSound) {
		fmt.Fprintf(stdout, "database %s is sound: nothing to repair\n", path)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "callgate repair: %v\n", err)
		if errors.Is(err, store.ErrLocked) {
			return exitRuntime
		}
		return exitDatabase
	}
	fmt.Fprintf(stdout, "repaired %s: %d problems in the damaged file, %d damaged pages skipped\n",
		path, rr.Before.ProblemCount, rr.Before.DamagedPages)
	for _, p := range rr.Before.Problems {
		fmt.Fprintf(stdout, "  - %s\n", p)
	}
	fmt.Fprintf(stdout, "saved %d keys:\n", rr.SavedKeys)
	before := map[string]int{}
	for _, b := range rr.Before.Buckets {
		before[b.Name] = b.Keys
	}
	for _, b := range rr.Saved {
		fmt.Fprintf(stdout, "  bucket %-40s %d keys (%d reachable in the damaged file)\n", b.Name, b.Keys, before[b.Name])
	}
	if rr.Orphans > 0 {
		fmt.Fprintf(stdout, "%d intact pages were cut off from their bucket: %d keys on them were put back by their shape (call records, settings); the rest are lost\n",
			rr.Orphans, rr.Recovered)
	}
	fmt.Fprintf(stdout, "lost: every key on the damaged pages and below them (bbolt keeps no count of those)\n"+
		"the damaged file is kept as %s\n"+
		"a missing link-signing key or CRM outbox entry is created anew on start: earlier recording links stop working\n", rr.Damaged)
	return exitOK
}

// dbAdvice tells an administrator what to do about a database error.
func dbAdvice(err error, cfgPath string) string {
	var de *store.DamagedError
	if !errors.As(err, &de) {
		return ""
	}
	cfgArg := " -config " + cfgPath
	if cfgPath == "" {
		cfgArg = " -db " + de.Path
	}
	switch de.Kind {
	case store.DamageCorrupt:
		return "what to do:\n" +
			"  callgate check-db" + cfgArg + "   see what is damaged\n" +
			"  callgate repair" + cfgArg + "     copy everything readable to a new database (the damaged file is kept)\n" +
			"  or restore a backup copy of the database to " + de.Path + "\n"
	default:
		run := "callgate run -init"
		if cfgPath != "" {
			run += " -config " + cfgPath
		}
		return "what to do: restore a backup copy of the database to " + de.Path + ",\n" +
			"  or, to start on purpose with a new empty database: " + run + "\n"
	}
}

// runFlags parses the run command's flags: -config FILE and -init.
func runFlags(args []string, stderr io.Writer) (cfgPath string, init, ok bool) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/callgate/callgate.toml", "configuration file")
	initDB := fs.Bool("init", false, "start with a new empty database even where one existed before (it is missing or 0 bytes)")
	if err := fs.Parse(args); err != nil {
		return "", false, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "callgate run: unexpected argument %q\n", fs.Arg(0))
		return "", false, false
	}
	return *path, *initDB, true
}

// initDatabase creates a new empty database for `run -init` where the
// marker would refuse a missing or empty one; a database with data in it is
// never replaced.
func initDatabase(dataDir string) error {
	s, err := store.OpenWith(dataDir, store.Options{Init: true})
	if err != nil {
		return err
	}
	return s.Close()
}

// startFailed reports why the daemon did not start: a database it will not
// use gets a plain explanation and exitDatabase.
func startFailed(err error, cfgPath string, stderr io.Writer) int {
	if !errors.Is(err, store.ErrDamaged) {
		return exitRuntime
	}
	fmt.Fprintf(stderr, "callgate: cannot start: %v\n%s", err, dbAdvice(err, cfgPath))
	var de *store.DamagedError
	if errors.As(err, &de) && len(de.Problems) > 1 {
		fmt.Fprintf(stderr, "problems found (%d):\n", de.Count)
		for _, p := range de.Problems {
			fmt.Fprintf(stderr, "  - %s\n", p)
		}
	}
	return exitDatabase
}
