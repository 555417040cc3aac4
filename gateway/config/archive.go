package config

import (
	"net/url"
	"regexp"
	"time"
)

// Archive moves recordings to S3-compatible object storage (MinIO, Ceph
// RGW, SeaweedFS, Yandex Object Storage, AWS S3) once they are complete.
// The key names are a contract: operators and scripts rely on them.
type Archive struct {
	Enabled bool `toml:"enabled"`
	// Endpoint is the storage's URL, e.g. "http://127.0.0.1:8333" or
	// "https://storage.yandexcloud.net".
	Endpoint string `toml:"endpoint"`
	Bucket   string `toml:"bucket"`
	Region   string `toml:"region"`
	// AccessKey and SecretKey (or the files holding them) sign requests.
	AccessKey     string `toml:"access_key"`
	AccessKeyFile string `toml:"access_key_file"`
	SecretKey     string `toml:"secret_key"`
	SecretKeyFile string `toml:"secret_key_file"`
	// PathStyle addresses the bucket as a path (http://host/bucket/key)
	// rather than a host name (http://bucket.host/key).
	PathStyle bool `toml:"path_style"`
	// After is how long a recording stays local before it is uploaded.
	After Duration `toml:"after"`
	// KeepLocal keeps the local copy after a verified upload (retention
	// still deletes it).
	KeepLocal bool `toml:"keep_local"`
}

// archiveDefaults are [archive]'s defaults.
func archiveDefaults() Archive { return Archive{PathStyle: true, Region: "us-east-1"} }

// bucketRe is an S3 bucket name: 3-63 lower-case letters, digits, dots
// and hyphens, starting and ending with a letter or digit.
var bucketRe = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

func (v *validator) archive(c *Config) {
	a := &c.Archive
	if !a.Enabled {
		return
	}
	if u, err := url.Parse(a.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		v.bad("archive.endpoint", `the storage's URL, e.g. "http://127.0.0.1:8333" or "https://storage.yandexcloud.net"`, "%q is not an http(s) URL of a host", a.Endpoint)
	}
	if !bucketRe.MatchString(a.Bucket) {
		v.bad("archive.bucket", `an S3 bucket name, e.g. "callgate-recordings"`, "%q is not a bucket name (3-63 lower-case letters, digits, dots, hyphens)", a.Bucket)
	}
	a.AccessKey = v.secret("archive.access_key", a.AccessKey, a.AccessKeyFile, "access_key_file")
	a.SecretKey = v.secret("archive.secret_key", a.SecretKey, a.SecretKeyFile, "secret_key_file")
	v.between("archive.after", a.After.D(), 0, 365*24*time.Hour)
	if !c.Recording.Enabled {
		v.bad("archive.enabled", "enable recording, or the archive has nothing to take", "recording.enabled is false")
	}
}
