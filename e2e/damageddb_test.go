package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"callgate/gateway/calls"
	"callgate/gateway/store"

	bolt "go.etcd.io/bbolt"
)

const historyCalls = 2000

// Exit codes of the command, as its documentation promises them: 3 when
// the daemon cannot start or run, 65 for a database it will not use (the
// unit does not restart on that one).
const (
	exitRuntime  = 3
	exitDatabase = 65
)

// seedHistory lets the daemon create its database (and the marker) as on a
// fresh install, then writes call history into it as the daemon does.
func seedHistory(t *testing.T) (daemonConfig, string) {
	t.Helper()
	cfg := newDaemonConfig(t, "")
	d := startDaemon(t, cfg)
	d.stop()
	if _, err := os.Stat(filepath.Join(cfg.DataDir, store.MarkerName)); err != nil {
		t.Fatalf("a fresh install wrote no marker: %v", err)
	}
	s, err := store.Open(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	for i := 0; i < historyCalls; i += 500 {
		err := s.Update(func(tx *bolt.Tx) error {
			for j := i; j < i+500; j++ {
				r := calls.Record{ID: historyID(j), Direction: "inbound", Caller: fmt.Sprintf("+7916%07d", j), Rung: []string{"ivanov"},
					AnsweredBy: "ivanov", Started: start.Add(time.Duration(j) * time.Minute), Result: "answered", TalkSeconds: 42,
					Answered: start.Add(time.Duration(j)*time.Minute + 5*time.Second), Ended: start.Add(time.Duration(j)*time.Minute + 47*time.Second),
					Legs: []calls.Leg{}}
				v, _ := json.Marshal(r)
				k := binary.BigEndian.AppendUint64(nil, uint64(r.Started.UnixNano()))
				if err := tx.Bucket(calls.Bucket).Put(append(k, r.ID...), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return cfg, d.path
}

func historyID(i int) string { return fmt.Sprintf("hist-%06d", i) }

// damageDB damages the database in dir as a failing disk or a careless
// admin would.
func damageDB(t *testing.T, dir, kind string) {
	t.Helper()
	path := filepath.Join(dir, store.FileName)
	switch kind {
	case "truncated":
		// Cut inside the pages in use: bbolt grows the file ahead of them,
		// and losing that unused tail is harmless.
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		var used int64
		_ = db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
		db.Close()
		if err := os.Truncate(path, used*7/10+1000); err != nil {
			t.Fatal(err)
		}
	case "random-pages":
		// Three random pages that hold data (a free page's damage is harmless).
		var used []int
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
		if err != nil {
			t.Fatal(err)
		}
		_ = db.View(func(tx *bolt.Tx) error {
			for id := 2; ; id++ {
				p, err := tx.Page(id)
				if err != nil || p == nil {
					return err
				}
				if p.Type == "leaf" || p.Type == "branch" {
					used = append(used, id)
					id += p.OverflowCount
				}
			}
		})
		db.Close()
		rng := rand.New(rand.NewPCG(11, 12))
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		junk := make([]byte, 4096)
		for i := 0; i < 3; i++ {
			for j := range junk {
				junk[j] = byte(rng.Uint32())
			}
			if _, err := f.WriteAt(junk, int64(used[rng.IntN(len(used))])*4096); err != nil {
				t.Fatal(err)
			}
		}
		f.Close()
	case "zero":
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
	case "missing":
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// runBounded runs the binary and fails if it does not exit within 30 s (a
// daemon that started on a damaged database would not).
func runBounded(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("callgate %s did not exit:\n%s", strings.Join(args, " "), errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func noPanic(t *testing.T, what, output string) {
	t.Helper()
	if strings.Contains(output, "panic:") || strings.Contains(output, "goroutine ") || strings.Contains(output, "fatal error") {
		t.Fatalf("%s crashed:\n%s", what, output)
	}
}

func countHistory(t *testing.T, dir string) int {
	t.Helper()
	s, err := store.Open(dir)
	if err != nil {
		t.Fatalf("the repaired database does not open: %v", err)
	}
	defer s.Close()
	n := 0
	_ = s.View(func(tx *bolt.Tx) error {
		return tx.Bucket(calls.Bucket).ForEach(func(k, v []byte) error {
			if bytes.HasPrefix(k[8:], []byte("hist-")) {
				n++
			}
			return nil
		})
	})
	return n
}

// A damaged, emptied or vanished database stops the start with a plain
// message and exit 65 (which the unit does not restart on), never a panic;
// check-db says so; repair saves what is readable and the daemon starts on
// the result; -init starts anew on an empty or missing one.
func TestDamagedDatabaseE2E(t *testing.T) {
	for _, kind := range []string{"truncated", "random-pages", "zero", "missing"} {
		t.Run(kind, func(t *testing.T) {
			cfg, cfgPath := seedHistory(t)
			dbPath := filepath.Join(cfg.DataDir, store.FileName)
			damageDB(t, cfg.DataDir, kind)

			_, errs, code := runBounded(t, "run", "-config", cfgPath)
			noPanic(t, "run", errs)
			if code != exitDatabase || !strings.Contains(errs, dbPath) {
				t.Fatalf("run: exit %d (want %d), stderr:\n%s", code, exitDatabase, errs)
			}
			wantAdvice := map[string][]string{
				"truncated":    {"is damaged", "truncated", "callgate check-db -config " + cfgPath, "callgate repair -config " + cfgPath, "backup"},
				"random-pages": {"is damaged", "overwritten", "callgate check-db", "callgate repair", "backup"},
				"zero":         {"is empty (0 bytes)", "callgate run -init -config " + cfgPath, "backup"},
				"missing":      {"is missing", store.MarkerName, "callgate run -init", "backup"},
			}[kind]
			for _, w := range wantAdvice {
				if !strings.Contains(errs, w) {
					t.Errorf("run: stderr lacks %q:\n%s", w, errs)
				}
			}

			out, errs, code := runBounded(t, "check-db", "-config", cfgPath)
			noPanic(t, "check-db", out+errs)
			if code != exitDatabase || !strings.Contains(out+errs, "DAMAGED") && kind != "missing" {
				t.Fatalf("check-db: exit %d\n%s\n%s", code, out, errs)
			}

			if kind == "zero" || kind == "missing" {
				// -init starts on purpose with a new database, once.
				cfg.RunArgs = []string{"-init"}
				d := startDaemon(t, cfg)
				d.stop()
				if n := countHistory(t, cfg.DataDir); n != 0 {
					t.Fatalf("%d calls in a new database", n)
				}
				return
			}

			out, errs, code = runBounded(t, "repair", "-config", cfgPath)
			noPanic(t, "repair", out+errs)
			if code != 0 || !strings.Contains(out, "saved") || !strings.Contains(out, "damaged file is kept as") {
				t.Fatalf("repair: exit %d\n%s\n%s", code, out, errs)
			}
			kept, _ := filepath.Glob(dbPath + ".damaged-*")
			if len(kept) != 1 {
				t.Fatalf("damaged file not kept: %v", kept)
			}
			if out, _, code := runBounded(t, "check-db", "-db", dbPath); code != 0 || !strings.Contains(out, "result: ok") {
				t.Fatalf("check-db after repair: exit %d\n%s", code, out)
			}

			d := startDaemon(t, cfg)
			// Neither command touches a database a running callgate holds.
			for _, cmd := range []string{"check-db", "repair"} {
				_, errs, code := runBounded(t, cmd, "-db", dbPath)
				if code != exitRuntime || !strings.Contains(errs, "locked by another callgate process") {
					t.Fatalf("%s on a running daemon's database: exit %d, %q", cmd, code, errs)
				}
			}
			var found string
			for i := historyCalls - 1; i >= 0 && found == ""; i -= 7 {
				res, err := d.get("/api/v1/calls/"+historyID(i), true)
				if err == nil {
					if res.StatusCode == 200 {
						found = historyID(i)
					}
					res.Body.Close()
				}
			}
			if found == "" {
				t.Fatal("the daemon serves none of the repaired call history")
			}
			d.stop()
			n := countHistory(t, cfg.DataDir)
			min := map[string]int{"truncated": historyCalls / 2, "random-pages": historyCalls * 9 / 10}[kind]
			t.Logf("%s: %d of %d calls saved; repair said:\n%s", kind, n, historyCalls, out)
			if n < min {
				t.Fatalf("%d of %d calls saved, want at least %d", n, historyCalls, min)
			}
		})
	}
}
