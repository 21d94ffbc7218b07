package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/storage"
	"github.com/georeg/georeg/storage/internal/s3server"
	"github.com/georeg/georeg/storage/storagetest"
)

const testBucket = "georeg-blobs"

// s3Env is one versitygw shared by the stores of a test, each store under a
// prefix of its own.
type s3Env struct {
	srv    *s3server.Server
	client *minio.Client // to look behind the store's back
	n      atomic.Int64
}

func newS3Env(t *testing.T) *s3Env {
	srv := s3server.Start(t)
	client, err := minio.New(srv.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
		Region: srv.Region,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &s3Env{srv: srv, client: client}
}

func (e *s3Env) config(t *testing.T) storage.S3Config {
	return storage.S3Config{
		Endpoint:  e.srv.Endpoint,
		Bucket:    testBucket,
		AccessKey: e.srv.AccessKey,
		SecretKey: e.srv.SecretKey,
		Region:    e.srv.Region,
		Prefix:    fmt.Sprintf("store%d", e.n.Add(1)),
		Logger:    testLogger(t),
	}
}

// newStore returns an S3 store under a fresh prefix that fails the test if
// a temporary object or an unfinished multipart upload outlives it.
func (e *s3Env) newStore(t *testing.T, cfg storage.S3Config) *storage.S3 {
	t.Helper()
	s, err := storage.NewS3(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		tmp := cfg.Prefix + "/tmp/"
		for obj := range e.client.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Prefix: tmp, Recursive: true}) {
			if obj.Err != nil {
				t.Errorf("listing %s: %v", tmp, obj.Err)
				break
			}
			t.Errorf("temporary object left behind: %s", obj.Key)
		}
		for up := range e.client.ListIncompleteUploads(ctx, cfg.Bucket, cfg.Prefix+"/", true) {
			if up.Err != nil {
				t.Errorf("listing uploads: %v", up.Err)
				break
			}
			t.Errorf("multipart upload left behind: %s", up.Key)
		}
	})
	return s
}

func TestS3(t *testing.T) {
	env := newS3Env(t)
	storagetest.Run(t, storagetest.Config{NewStore: func(t *testing.T) storage.BlobStore {
		return env.newStore(t, env.config(t))
	}})
}

func TestS3Layout(t *testing.T) {
	env := newS3Env(t)
	cfg := env.config(t)
	cfg.Prefix = "/zone-1/" // slashes are trimmed
	s := env.newStore(t, cfg)
	data := []byte("layout")
	dgst := digest.FromBytes(data)
	if _, err := s.Put(t.Context(), dgst, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	key := "zone-1/blobs/sha256/" + dgst.Encoded()
	info, err := env.client.StatObject(t.Context(), testBucket, key, minio.StatObjectOptions{})
	if err != nil || info.Size != int64(len(data)) {
		t.Fatalf("StatObject(%s) = %d bytes, %v", key, info.Size, err)
	}
	// Stray objects under the prefix are not blobs.
	for _, stray := range []string{"zone-1/blobs/README", "zone-1/blobs/sha256/nope", "zone-1/blobs/md5/abc"} {
		if _, err := env.client.PutObject(t.Context(), testBucket, stray, strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	err = s.Walk(t.Context(), func(d digest.Digest, size int64) error {
		n++
		if d != dgst {
			t.Errorf("Walk listed %s", d)
		}
		return nil
	})
	if err != nil || n != 1 {
		t.Errorf("Walk = %v after %d blobs, want 1 blob", err, n)
	}
}

func TestS3VerifyCorrupt(t *testing.T) {
	env := newS3Env(t)
	cfg := env.config(t)
	s := env.newStore(t, cfg)
	data := bytes.Repeat([]byte("0123456789"), 1000)
	dgst := digest.FromBytes(data)
	if _, err := s.Put(t.Context(), dgst, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	stamp, err := s.Stamp(t.Context(), dgst)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(data)
	bad[10] = 'X'
	key := cfg.Prefix + "/blobs/sha256/" + dgst.Encoded()
	if _, err := env.client.PutObject(t.Context(), testBucket, key, bytes.NewReader(bad), int64(len(bad)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := storage.Verify(t.Context(), s, dgst); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Errorf("Verify = %v, want ErrDigestMismatch", err)
	}
	if got, err := s.Stamp(t.Context(), dgst); err != nil || got == stamp {
		t.Errorf("Stamp = %q, %v after the object was overwritten; was %q", got, err, stamp)
	}
}

func TestS3RemovesStaleTemp(t *testing.T) {
	env := newS3Env(t)
	cfg := env.config(t)
	env.newStore(t, cfg) // creates the bucket
	stale := cfg.Prefix + "/tmp/crashed-put"
	if _, err := env.client.PutObject(t.Context(), testBucket, stale, strings.NewReader("half"), 4, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	core := minio.Core{Client: env.client}
	if _, err := core.NewMultipartUpload(t.Context(), testBucket, cfg.Prefix+"/tmp/crashed-multipart", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}

	// A young temporary object may be a Put in progress elsewhere: kept.
	if _, err := storage.NewS3(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := env.client.StatObject(t.Context(), testBucket, stale, minio.StatObjectOptions{}); err != nil {
		t.Fatalf("NewS3 removed a young temporary object: %v", err)
	}

	cfg.StaleTempAge = time.Nanosecond
	if _, err := storage.NewS3(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	// The cleanup registered by newStore checks that nothing is left.
}

func TestS3BadCredentials(t *testing.T) {
	env := newS3Env(t)
	cfg := env.config(t)
	cfg.SecretKey = "wrong"
	if _, err := storage.NewS3(t.Context(), cfg); err == nil {
		t.Fatal("NewS3 with a wrong secret succeeded")
	}
}
