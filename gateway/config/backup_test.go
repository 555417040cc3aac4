package config

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestBackupDefaults(t *testing.T) {
	c, err := Parse("good.toml", []byte(goodBase))
	if err != nil {
		t.Fatal(err)
	}
	if c.Control.Socket != "/run/callgate/control.sock" || c.Backup.Dir != "" || c.Backup.Every.D() != 24*time.Hour || c.Backup.Keep != 7 {
		t.Fatalf("defaults: %+v %+v", c.Control, c.Backup)
	}
	c, err = Parse("good.toml", []byte(goodBase+"[control]\nsocket = \"\"\n[backup]\ndir = \"/var/lib/callgate/backups\"\nevery = \"6h\"\nkeep = 28\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Control.Socket != "" || c.Backup.Dir != "/var/lib/callgate/backups" || c.Backup.Every.D() != 6*time.Hour || c.Backup.Keep != 28 || c.Backup.Target != "dir" {
		t.Fatalf("set: %+v %+v", c.Control, c.Backup)
	}
	c, err = Parse("good.toml", []byte(goodBase+"[archive]\nenabled = true\nendpoint = \"http://127.0.0.1:8333\"\nbucket = \"callgate-recordings\"\n"+
		"access_key = \"a\"\nsecret_key = \"s\"\n[backup]\ntarget = \"archive\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Backup.Target != "archive" || c.Backup.Dir != "" {
		t.Fatalf("to the archive: %+v", c.Backup)
	}
}

func TestBrokenBackupConfigs(t *testing.T) {
	long := "/run/" + strings.Repeat("x", 110) + ".sock"
	for _, tc := range []struct{ name, doc, want string }{
		{"relative socket", "[control]\nsocket = \"control.sock\"\n", `2: control.socket: "control.sock" is not an absolute path`},
		{"long socket", "[control]\nsocket = \"" + long + "\"\n", "2: control.socket: 120 bytes is longer than a unix socket path may be"},
		{"relative dir", "[backup]\ndir = \"backups\"\n", `2: backup.dir: "backups" is not an absolute path`},
		{"data_dir", "[backup]\ndir = \"/tmp/cg/\"\n", "2: backup.dir: must not be data_dir itself"},
		{"too often", "[backup]\ndir = \"/b\"\nevery = \"10s\"\n", "3: backup.every: 10s is out of range"},
		{"keep none", "[backup]\ndir = \"/b\"\nkeep = 0\n", "3: backup.keep: 0 is out of range"},
		{"every without unit", "[backup]\ndir = \"/b\"\nevery = \"24\"\n", "3: backup.every: \"24\" is not a duration"},
		{"unknown target", "[backup]\ntarget = \"ftp\"\n", `2: backup.target: "ftp" is not a backup target`},
		{"archive off", "[backup]\ntarget = \"archive\"\n", `2: backup.target: "archive" needs [archive] enabled = true`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.toml", []byte(goodBase+tc.doc))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want a config error, got %v", err)
			}
			want := "bad.toml:" + lineAfterBase(tc.want)
			for _, p := range ce.Problems {
				if strings.HasPrefix(p.String(), want) && p.Hint != "" {
					return
				}
			}
			t.Fatalf("want a problem with a hint starting %q, got:\n%v", want, err)
		})
	}
	// Off, the schedule's keys are not checked.
	if _, err := Parse("ok.toml", []byte(goodBase+"[backup]\nkeep = 0\n")); err != nil {
		t.Fatalf("backups off: %v", err)
	}
}

// lineAfterBase turns "N: ..." with N counted in the appended text into
// the line in the whole file.
func lineAfterBase(want string) string {
	n, rest, _ := strings.Cut(want, ":")
	line, _ := strconv.Atoi(n)
	return strconv.Itoa(line+strings.Count(goodBase, "\n")) + ":" + rest
}
