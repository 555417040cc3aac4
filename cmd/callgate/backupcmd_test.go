package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"callgate/gateway/store"

	bolt "go.etcd.io/bbolt"
)

// backupConfig writes a configuration for dataDir with a control socket
// nobody serves.
func backupConfig(t *testing.T, dataDir string) string {
	t.Helper()
	sock, err := os.MkdirTemp("", "cgcli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	path := filepath.Join(t.TempDir(), "callgate.toml")
	doc := "data_dir = \"" + dataDir + "\"\n[control]\nsocket = \"" + filepath.Join(sock, "control.sock") + "\"\n[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// With callgate stopped, backup copies the database file and restore puts
// a copy into a fresh data_dir; what is not a callgate database is refused
// with exit 65 and nothing replaced.
func TestBackupAndRestoreOfAStoppedCallgate(t *testing.T) {
	data := t.TempDir()
	db, err := store.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(store.BucketBindings).Put([]byte("101"), []byte("binding")) })
	db.Close()
	out := filepath.Join(t.TempDir(), "copy.db")
	stdout, errs, code := runCLI(t, "", "backup", "-config", backupConfig(t, data), "-o", out)
	if code != 0 || !strings.Contains(stdout, "(callgate is not running)") || !strings.Contains(stdout, "written to "+out) {
		t.Fatalf("backup: exit %d %q %q", code, stdout, errs)
	}
	if _, err := store.VerifyBackup(out, true); err != nil {
		t.Fatal(err)
	}

	fresh := filepath.Join(t.TempDir(), "fresh")
	cfg := backupConfig(t, fresh)
	garbage := filepath.Join(t.TempDir(), "garbage.db")
	os.WriteFile(garbage, bytes.Repeat([]byte{0xab}, 64<<10), 0o600)
	if _, errs, code := runCLI(t, "", "restore", "-config", cfg, "-i", garbage); code != exitDatabase || !strings.Contains(errs, "not a usable callgate backup") {
		t.Fatalf("garbage: exit %d %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(fresh, store.FileName)); err == nil {
		t.Fatal("garbage restored")
	}
	stdout, errs, code = runCLI(t, "", "restore", "-config", cfg, "-i", out)
	if code != 0 || !strings.Contains(stdout, "restored "+out) {
		t.Fatalf("restore: exit %d %q %q", code, stdout, errs)
	}
	db, err = store.Open(fresh)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got []byte
	db.View(func(tx *bolt.Tx) error {
		got = append(got, tx.Bucket(store.BucketBindings).Get([]byte("101"))...)
		return nil
	})
	if string(got) != "binding" {
		t.Fatalf("restored database holds %q", got)
	}
	// Open, the database is locked: restore refuses, backup cannot copy it
	// without a daemon to ask.
	if _, errs, code := runCLI(t, "", "restore", "-config", cfg, "-i", out); code != exitRuntime || !strings.Contains(errs, "stop it first") {
		t.Fatalf("restore over an open database: exit %d %q", code, errs)
	}
	if _, errs, code := runCLI(t, "", "backup", "-config", cfg, "-o", out); code != exitRuntime || !strings.Contains(errs, "does not answer") {
		t.Fatalf("backup of a locked database without its daemon: exit %d %q", code, errs)
	}
	if _, err := store.VerifyBackup(out, true); err != nil {
		t.Fatalf("the failed backup damaged the earlier copy: %v", err)
	}
	if _, _, code := runCLI(t, "", "backup", "-config", cfg); code != exitUsage {
		t.Fatalf("backup without -o: exit %d", code)
	}
}

// background lowers the priority of every thread of the process.
func TestBackgroundLowersEveryThread(t *testing.T) {
	background()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if f[16] != strconv.Itoa(backgroundNice) { // field 19 of stat(5)
			t.Fatalf("thread %s at nice %s, want %d", task.Name(), f[16], backgroundNice)
		}
	}
}
