// Package archive talks to the S3-compatible object storage recordings are
// archived to (MinIO, Ceph RGW, SeaweedFS, Yandex Object Storage, AWS S3),
// through minio-go: uploads checked by the server against their checksum,
// objects opened for ranged reads, deletions.
package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"callgate/gateway/config"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Config is the storage and how callgate signs its requests.
type Config struct {
	Endpoint             string // http(s)://host[:port]
	Bucket, Region       string
	AccessKey, SecretKey string
	PathStyle            bool
}

// Store is one bucket.
type Store struct {
	client *minio.Client
	bucket string
}

// ErrNotFound means no such object.
var ErrNotFound = errors.New("no such object")

// FromConfig is the store [archive] names.
func FromConfig(a config.Archive) (*Store, error) {
	return New(Config{Endpoint: a.Endpoint, Bucket: a.Bucket, Region: a.Region, AccessKey: a.AccessKey, SecretKey: a.SecretKey, PathStyle: a.PathStyle})
}

// New returns the bucket's store; it does not reach the storage yet.
func New(cfg Config) (*Store, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("archive endpoint %q: %w", cfg.Endpoint, err)
	}
	lookup := minio.BucketLookupDNS
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       u.Scheme == "https",
		Region:       cfg.Region,
		BucketLookup: lookup,
		// The archive's queue retries with its own backoff: minio-go's
		// ten tries with theirs would hold the queue seconds per
		// recording while the storage is down.
		MaxRetries: 2,
		Transport:  &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8, ResponseHeaderTimeout: 30 * time.Second},
	})
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", cfg.Endpoint, err)
	}
	return &Store{client: c, bucket: cfg.Bucket}, nil
}

// Check reports whether the bucket can be reached with the credentials:
// a wrong key, a missing bucket or a storage that does not answer is an
// error saying which. It lists one key, not HEAD: a HEAD's answer has no
// body, and storages then say no more than 403 or 404.
func (s *Store) Check(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the listing after its first answer
	if o, ok := <-s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{MaxKeys: 1}); ok && o.Err != nil {
		return fmt.Errorf("archive bucket %s: %s", s.bucket, describe(o.Err))
	}
	return nil
}

// Upload stores the file at path as key with its metadata. The storage
// checks the body against the MD5 callgate sends with it (Content-MD5),
// and the stored size is read back, so a stored object is the file as it
// was.
func (s *Store) Upload(ctx context.Context, key, path, contentType string, meta map[string]string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	info, err := s.client.PutObject(ctx, s.bucket, key, f, st.Size(), minio.PutObjectOptions{
		ContentType: contentType, UserMetadata: meta, SendContentMd5: true, DisableMultipart: st.Size() < 64<<20,
	})
	if err != nil {
		return fmt.Errorf("upload %s: %s", key, describe(err))
	}
	got, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return fmt.Errorf("upload %s: reading it back: %s", key, describe(err))
	}
	if got.Size != st.Size() || info.Size != st.Size() {
		return fmt.Errorf("upload %s: the storage holds %d bytes of %d", key, got.Size, st.Size())
	}
	return nil
}

// Object is an archived object opened for reading with Seek (ranged GETs).
type Object struct {
	io.ReadSeekCloser
	Size    int64
	ModTime time.Time
	Type    string
}

// Open opens key for reading; ErrNotFound when it does not exist.
func (s *Store) Open(ctx context.Context, key string) (*Object, error) {
	o, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("archive %s: %s", key, describe(err))
	}
	st, err := o.Stat()
	if err != nil {
		o.Close()
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil, fmt.Errorf("archive %s: %w", key, ErrNotFound)
		}
		return nil, fmt.Errorf("archive %s: %s", key, describe(err))
	}
	return &Object{ReadSeekCloser: o, Size: st.Size, ModTime: st.LastModified, Type: st.ContentType}, nil
}

// List is the keys under prefix, in the storage's (lexical) order.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("archive list %s: %s", prefix, describe(o.Err))
		}
		keys = append(keys, o.Key)
	}
	return keys, nil
}

// Remove deletes key; a key already gone is not an error.
func (s *Store) Remove(ctx context.Context, key string) error {
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("archive remove %s: %s", key, describe(err))
	}
	return nil
}

// describe is an S3 error as an admin reads it: the storage's code and
// message (InvalidAccessKeyId, SignatureDoesNotMatch, NoSuchBucket...) or
// the network error, never the request's signature.
func describe(err error) string {
	if r := minio.ToErrorResponse(err); r.Code != "" {
		msg := r.Code + ": " + r.Message
		if hint := hints[r.Code]; hint != "" {
			msg += " (" + hint + ")"
		}
		return msg
	}
	return err.Error()
}

// hints say what an operator fixes for the storage's usual refusals.
var hints = map[string]string{
	"SignatureDoesNotMatch": "check archive.secret_key",
	"InvalidAccessKeyId":    "check archive.access_key",
	"AccessDenied":          "the key may not write to this bucket: check the storage's policy for archive.access_key",
	"NoSuchBucket":          "create the bucket or correct archive.bucket",
}
