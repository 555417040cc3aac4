package config

import (
	"path/filepath"
	"time"
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path
// holds 108 bytes with the terminating NUL).
const maxSocketPath = 107

func (v *validator) backup(c *Config) {
	if s := c.Control.Socket; s != "" {
		if !filepath.IsAbs(s) {
			v.bad("control.socket", `an absolute path, e.g. "/run/callgate/control.sock"`, "%q is not an absolute path", s)
		} else if len(s) > maxSocketPath {
			v.bad("control.socket", "a shorter path, e.g. \"/run/callgate/control.sock\"", "%d bytes is longer than a unix socket path may be (%d)", len(s), maxSocketPath)
		}
	}
	b := &c.Backup
	switch b.Target {
	case BackupToDir:
		if b.Dir == "" {
			return // no scheduled backups
		}
	case BackupToArchive:
		if !c.Archive.Enabled {
			v.bad("backup.target", `"dir", or enable [archive] to keep the copies in its bucket`, "\"archive\" needs [archive] enabled = true")
		}
	default:
		v.bad("backup.target", `"dir" (backup.dir) or "archive" (the [archive] bucket)`, "%q is not a backup target", b.Target)
		return
	}
	if b.Dir != "" {
		if !filepath.IsAbs(b.Dir) {
			v.bad("backup.dir", `an absolute path, e.g. "/var/lib/callgate/backups"`, "%q is not an absolute path", b.Dir)
		} else if filepath.Clean(b.Dir) == filepath.Clean(c.DataDir) {
			v.bad("backup.dir", `a directory of its own, e.g. "/var/lib/callgate/backups"`, "must not be data_dir itself")
		}
	}
	v.between("backup.every", b.Every.D(), time.Minute, 31*24*time.Hour)
	if b.Keep < 1 || b.Keep > 1000 {
		v.bad("backup.keep", "e.g. 7: a week of daily copies", "%d is out of range 1..1000", b.Keep)
	}
}
