package storage

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/opencontainers/go-digest"
)

// S3Config configures an S3 BlobStore.
type S3Config struct {
	// Endpoint is the server's host:port, without a scheme.
	Endpoint string
	// Bucket holds the blobs. NewS3 creates it when it is missing.
	Bucket string
	// AccessKey and SecretKey are static credentials.
	AccessKey string
	SecretKey string
	// Region of the bucket. Empty lets the client discover it.
	Region string
	// Secure selects HTTPS.
	Secure bool
	// Prefix, when set, is prepended to every key, so several stores can
	// share a bucket.
	Prefix string
	// PartSize is the multipart part size. A Put of unknown size buffers
	// one part in memory, and no object may have more than 10,000 parts, so
	// it bounds both memory and the largest blob. 0 means 16 MiB (blobs up
	// to about 156 GiB).
	PartSize uint64
	// StaleTempAge is how old a temporary object or unfinished multipart
	// upload must be for NewS3 to remove it as left behind by a crash. It
	// must exceed the longest Put. 0 means one hour; negative disables the
	// cleanup.
	StaleTempAge time.Duration
	// Logger receives the store's rare notices; nil discards them.
	Logger *slog.Logger
}

// Defaults for the zero values of S3Config.
const (
	defaultPartSize     = 16 << 20
	defaultStaleTempAge = time.Hour
)

// maxCopySize is the largest object S3 copies in one request; larger ones
// are copied part by part.
const maxCopySize = 5 << 30

// S3 is a BlobStore in a bucket of an S3-compatible object store. See the
// package documentation for its layout and its guarantees.
type S3 struct {
	client   *minio.Client
	bucket   string
	prefix   string // "" or ends in "/"
	partSize uint64
	log      *slog.Logger
}

var (
	_ BlobStore    = (*S3)(nil)
	_ FileIngester = (*S3)(nil)
	_ Stamper      = (*S3)(nil)
)

// NewS3 connects to the bucket, creating it if needed, and removes the
// temporary objects older than cfg.StaleTempAge.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("storage: S3Config needs Endpoint and Bucket")
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.Secure,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("storage: s3 client: %w", err)
	}
	s := &S3{
		client:   client,
		bucket:   cfg.Bucket,
		partSize: cfg.PartSize,
		log:      cfg.Logger,
	}
	if p := strings.Trim(cfg.Prefix, "/"); p != "" {
		s.prefix = p + "/"
	}
	if s.partSize == 0 {
		s.partSize = defaultPartSize
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.ensureBucket(ctx, cfg.Region); err != nil {
		return nil, err
	}
	age := cfg.StaleTempAge
	if age == 0 {
		age = defaultStaleTempAge
	}
	if age > 0 {
		s.removeStale(ctx, time.Now().Add(-age))
	}
	return s, nil
}

func (s *S3) ensureBucket(ctx context.Context, region string) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("storage: s3 bucket %s: %w", s.bucket, err)
	}
	if ok {
		return nil
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region})
	switch minio.ToErrorResponse(err).Code {
	case "BucketAlreadyOwnedByYou", "BucketAlreadyExists":
		return nil // created by a concurrent NewS3
	}
	if err != nil {
		return fmt.Errorf("storage: s3 create bucket %s: %w", s.bucket, err)
	}
	s.log.Info("created bucket", "bucket", s.bucket)
	return nil
}

// removeStale removes what crashed Puts and ingests left behind: temporary
// objects and unfinished multipart uploads started before cutoff. It is best
// effort: a failure costs space, not correctness.
func (s *S3) removeStale(ctx context.Context, cutoff time.Time) {
	removed := 0
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + "tmp/", Recursive: true}) {
		if obj.Err != nil {
			s.log.Warn("listing temporary objects", "err", obj.Err)
			break
		}
		if obj.LastModified.Before(cutoff) {
			if err := s.client.RemoveObject(ctx, s.bucket, obj.Key, minio.RemoveObjectOptions{}); err != nil {
				s.log.Warn("removing stale temporary object", "key", obj.Key, "err", err)
				continue
			}
			removed++
		}
	}
	for _, p := range []string{s.prefix + "tmp/", s.prefix + "blobs/"} {
		for up := range s.client.ListIncompleteUploads(ctx, s.bucket, p, true) {
			if up.Err != nil {
				s.log.Warn("listing unfinished uploads", "err", up.Err)
				break
			}
			if up.Initiated.Before(cutoff) {
				if err := s.client.RemoveIncompleteUpload(ctx, s.bucket, up.Key); err != nil {
					s.log.Warn("aborting stale upload", "key", up.Key, "err", err)
					continue
				}
				removed++
			}
		}
	}
	if removed > 0 {
		s.log.Info("removed stale temporary objects", "bucket", s.bucket, "prefix", s.prefix, "count", removed)
	}
}

func (s *S3) key(dgst digest.Digest) string {
	return s.prefix + "blobs/" + string(dgst.Algorithm()) + "/" + dgst.Encoded()
}

// Stat implements BlobStore.
func (s *S3) Stat(ctx context.Context, dgst digest.Digest) (int64, error) {
	if err := validDigest(dgst); err != nil {
		return 0, err
	}
	info, err := s.client.StatObject(ctx, s.bucket, s.key(dgst), minio.StatObjectOptions{})
	if err != nil {
		return 0, objectError(dgst, err)
	}
	return info.Size, nil
}

// Stamp implements Stamper: the object's ETag, size and modification time,
// which change whenever the object is written.
func (s *S3) Stamp(ctx context.Context, dgst digest.Digest) (string, error) {
	if err := validDigest(dgst); err != nil {
		return "", err
	}
	info, err := s.client.StatObject(ctx, s.bucket, s.key(dgst), minio.StatObjectOptions{})
	if err != nil {
		return "", objectError(dgst, err)
	}
	return fmt.Sprintf("%s/%d/%d", info.ETag, info.Size, info.LastModified.UnixNano()), nil
}

// Open implements BlobStore. The reader is a plain stream of the range
// [offset, size): ranged reads of an S3 blob open it at the wanted offset.
func (s *S3) Open(ctx context.Context, dgst digest.Digest, offset int64) (io.ReadCloser, error) {
	size, err := s.Stat(ctx, dgst)
	if err != nil {
		return nil, err
	}
	if offset < 0 || offset > size {
		return nil, fmt.Errorf("%w: %s: offset %d, size %d", ErrInvalidOffset, dgst, offset, size)
	}
	if offset == size {
		// An empty range is not a valid Range header; there is nothing to get.
		return io.NopCloser(strings.NewReader("")), nil
	}
	var opts minio.GetObjectOptions
	if offset > 0 {
		if err := opts.SetRange(offset, 0); err != nil {
			return nil, fmt.Errorf("storage: open %s: %w", dgst, err)
		}
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.key(dgst), opts)
	if err != nil {
		return nil, objectError(dgst, err)
	}
	return &s3Reader{obj: obj, dgst: dgst}, nil
}

// s3Reader hides the minio object's Seek and ReadAt, which would address
// the range rather than the blob, and maps its errors to ours: the request
// is sent on the first Read, so a blob deleted since Stat fails there.
type s3Reader struct {
	obj  *minio.Object
	dgst digest.Digest
}

func (r *s3Reader) Read(p []byte) (int, error) {
	n, err := r.obj.Read(p)
	if err != nil && err != io.EOF {
		err = objectError(r.dgst, err)
	}
	return n, err
}

func (r *s3Reader) Close() error { return r.obj.Close() }

// Put implements BlobStore.
func (s *S3) Put(ctx context.Context, dgst digest.Digest, size int64, r io.Reader) (int64, error) {
	if err := validDigest(dgst); err != nil {
		return 0, err
	}
	if size < -1 {
		return 0, fmt.Errorf("storage: put %s: invalid size %d", dgst, size)
	}
	hr := newHashingReader(ctx, r, dgst, size)
	key := s.key(dgst)
	_, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err == nil {
		// Already stored: check the caller's bytes all the same, so that
		// Put reports a mismatch whether or not the digest is present.
		buf, release := copyBuffer(size)
		_, err := io.CopyBuffer(io.Discard, hr, buf)
		release()
		if err != nil {
			return 0, fmt.Errorf("storage: put %s: %w", dgst, err)
		}
		if err := hr.check(dgst); err != nil {
			return 0, err
		}
		return hr.n, nil
	}
	if err := objectError(dgst, err); !errors.Is(err, ErrNotFound) {
		return 0, err
	}

	tmp := s.prefix + "tmp/" + rand.Text()
	uploaded := false
	defer func() { s.removeTemp(ctx, tmp, uploaded) }()
	info, err := s.client.PutObject(ctx, s.bucket, tmp, hr, size, minio.PutObjectOptions{
		PartSize:    s.partSize,
		ContentType: "application/octet-stream",
	})
	if err != nil {
		return 0, s.putError(ctx, dgst, hr, err)
	}
	uploaded = true
	if size >= 0 {
		// The client stops reading at size bytes; a longer source must
		// still fail. hr reads at most one byte past size.
		if _, err := io.Copy(io.Discard, hr); err != nil {
			return 0, fmt.Errorf("storage: put %s: %w", dgst, err)
		}
	}
	if err := hr.check(dgst); err != nil {
		return 0, err
	}
	if info.Size != hr.n {
		return 0, fmt.Errorf("storage: put %s: server stored %d bytes, sent %d", dgst, info.Size, hr.n)
	}
	// The bytes are verified and the server acknowledged them; a copy makes
	// them visible under the digest all at once.
	dst := minio.CopyDestOptions{Bucket: s.bucket, Object: key}
	src := minio.CopySrcOptions{Bucket: s.bucket, Object: tmp}
	if hr.n <= maxCopySize {
		_, err = s.client.CopyObject(ctx, dst, src)
	} else {
		dst.PartSize = s.partSize
		_, err = s.client.ComposeObject(ctx, dst, src)
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			err = cerr
		}
		return 0, fmt.Errorf("storage: put %s: copy to %s: %w", dgst, key, err)
	}
	return hr.n, nil
}

// putError explains a failed upload by its cause: the caller's context, the
// caller's reader, a source shorter than promised, or the server.
func (s *S3) putError(ctx context.Context, dgst digest.Digest, hr *hashingReader, err error) error {
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
	case hr.err != nil:
		err = hr.err
	case hr.eof, hr.limit >= 0 && hr.n > hr.limit:
		if cerr := hr.check(dgst); cerr != nil {
			return cerr
		}
	}
	return fmt.Errorf("storage: put %s: %w", dgst, err)
}

// removeTemp removes a temporary object and, when its upload did not
// complete, any multipart upload to it. It runs even when ctx is cancelled,
// since a cancelled Put must leave nothing.
func (s *S3) removeTemp(ctx context.Context, tmp string, uploaded bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := s.client.RemoveObject(ctx, s.bucket, tmp, minio.RemoveObjectOptions{}); err != nil {
		s.log.Warn("removing temporary object", "key", tmp, "err", err)
	}
	if uploaded {
		return
	}
	// minio-go aborts a failed multipart upload itself; this catches the
	// one it could not abort.
	if err := s.client.RemoveIncompleteUpload(ctx, s.bucket, tmp); err != nil {
		s.log.Warn("aborting temporary upload", "key", tmp, "err", err)
	}
}

// Delete implements BlobStore.
func (s *S3) Delete(ctx context.Context, dgst digest.Digest) error {
	if _, err := s.Stat(ctx, dgst); err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, s.key(dgst), minio.RemoveObjectOptions{}); err != nil {
		return objectError(dgst, err)
	}
	return nil
}

// Walk implements BlobStore. Keys that are not digests are skipped.
func (s *S3) Walk(ctx context.Context, fn func(dgst digest.Digest, size int64) error) error {
	ctx, cancel := context.WithCancel(ctx) // stops the listing when fn fails
	defer cancel()
	base := s.prefix + "blobs/"
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: base, Recursive: true}) {
		if obj.Err != nil {
			return fmt.Errorf("storage: walk: %w", obj.Err)
		}
		alg, enc, _ := strings.Cut(strings.TrimPrefix(obj.Key, base), "/")
		dgst := digest.NewDigestFromEncoded(digest.Algorithm(alg), enc)
		if dgst.Validate() != nil {
			s.log.Debug("walk: skipping stray object", "key", obj.Key)
			continue
		}
		if err := fn(dgst, obj.Size); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// IngestFile implements FileIngester by uploading the file straight to its
// final key: an S3 object becomes visible only once complete. size -1 skips
// the size check.
func (s *S3) IngestFile(ctx context.Context, dgst digest.Digest, size int64, path string) error {
	if err := validDigest(dgst); err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("storage: ingest %s: %w", dgst, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("storage: ingest %s: %s is not a regular file", dgst, path)
	}
	if size >= 0 && fi.Size() != size {
		return fmt.Errorf("%w: %s: file has %d bytes, want %d", ErrSizeMismatch, dgst, fi.Size(), size)
	}
	key := s.key(dgst)
	_, err = s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err := objectError(dgst, err); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if err == nil {
		return removeIngested(path)
	}
	_, err = s.client.FPutObject(ctx, s.bucket, key, path, minio.PutObjectOptions{
		PartSize:    s.partSize,
		ContentType: "application/octet-stream",
	})
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			err = cerr
		}
		return fmt.Errorf("storage: ingest %s: %w", dgst, err)
	}
	return removeIngested(path)
}

// removeIngested removes a file the store now holds a copy of.
func removeIngested(path string) error {
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("storage: ingest: %w", err)
	}
	return nil
}

// objectError maps a missing object to ErrNotFound and passes nil through.
func objectError(dgst digest.Digest, err error) error {
	if err == nil {
		return nil
	}
	if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
		return fmt.Errorf("%w: %s", ErrNotFound, dgst)
	}
	return fmt.Errorf("storage: %s: %w", dgst, err)
}
