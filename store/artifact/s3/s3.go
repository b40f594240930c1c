// Package s3 is an artifact.Store on Amazon S3 or any S3-compatible service
// (MinIO, versitygw, Ceph RGW, ...).
//
// Put streams through the SDK's transfer manager: the object is sent in
// parts of Config.PartSize bytes, Config.Concurrency at a time, so memory
// stays near PartSize*(Concurrency+2) whatever the object size and nothing
// is spooled to disk. Since the size is not known up front, an object can
// have at most 10,000 parts: 156 GiB at the default 16 MiB PartSize; raise
// PartSize for bigger dumps (64 MiB allows 625 GiB). An object becomes
// visible only when its upload completes; a failed or cancelled upload is
// aborted so no parts linger.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/btfu/btfu/store/artifact"
)

// DefaultPartSize is the multipart part size used when Config.PartSize is 0.
const DefaultPartSize = 16 << 20

// MinPartSize is S3's smallest part of a multipart upload.
const MinPartSize = 5 << 20

// DefaultConcurrency is the number of parts uploaded in parallel when
// Config.Concurrency is 0 (the transfer manager's own default).
const DefaultConcurrency = 5

// Config says where the store is and how to reach it.
type Config struct {
	Bucket   string
	Prefix   string // optional key prefix; joined to keys with '/'
	Region   string // default: from the AWS environment/profile, else us-east-1
	Endpoint string // e.g. "http://127.0.0.1:7070"; empty for AWS
	// PathStyle addresses buckets as <endpoint>/<bucket> instead of
	// <bucket>.<endpoint>; most self-hosted services need it.
	PathStyle bool
	// Static credentials. When AccessKeyID is empty the AWS default chain
	// is used (environment, shared config/credentials files, SSO, web
	// identity, ECS/EC2 roles).
	AccessKeyID, SecretAccessKey, SessionToken string
	PartSize                                   int64 // default DefaultPartSize; at least 5 MiB
	Concurrency                                int   // default DefaultConcurrency
}

// Store is an artifact.Store in one bucket, under an optional prefix.
type Store struct {
	client   *s3.Client
	uploader *transfermanager.Client
	bucket   string
	prefix   string // "" or ending in '/'
	where    string
}

var _ artifact.Store = (*Store)(nil)

// New connects to the bucket and checks that it is reachable with the
// given credentials (HeadBucket).
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var opts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 bucket %q: load AWS configuration: %w", cfg.Bucket, err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		// Objects uploaded in parts have no whole-object checksum to
		// verify; do not log a warning on every such Get.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	prefix := strings.Trim(cfg.Prefix, "/")
	s := &Store{
		client: client,
		uploader: transfermanager.New(client, func(o *transfermanager.Options) {
			o.PartSizeBytes = orDefault(cfg.PartSize, DefaultPartSize)
			o.Concurrency = orDefault(cfg.Concurrency, DefaultConcurrency)
			// Up to one part in memory: smaller objects (most segments)
			// go in one PutObject, larger ones in parts.
			o.MultipartUploadThreshold = o.PartSizeBytes
			// A failed or cancelled upload is aborted with a context of
			// its own, so its parts do not linger (and cost).
			o.FailTimeout = time.Minute
		}),
		bucket: cfg.Bucket,
		where:  "s3://" + cfg.Bucket,
	}
	if prefix != "" {
		s.prefix = prefix + "/"
		s.where += "/" + prefix
	}
	if cfg.Endpoint != "" {
		s.where += " at " + cfg.Endpoint
	}
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.Bucket)}); err != nil {
		// A HEAD error has no body, hence no S3 error code to tell a
		// missing bucket from an unknown key (versitygw answers 404 to
		// both); a GET says which.
		if status(err) != 0 {
			_, lerr := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(cfg.Bucket), MaxKeys: aws.Int32(1)})
			if lerr != nil {
				err = lerr
			}
		}
		return nil, fmt.Errorf("s3 bucket %q at %s (region %s, path_style=%t) is not reachable: %s: %w",
			cfg.Bucket, orDefault(cfg.Endpoint, "AWS"), awsCfg.Region, cfg.PathStyle, hint(err, cfg), err)
	}
	return s, nil
}

func (c *Config) validate() error {
	switch {
	case c.Bucket == "":
		return errors.New("s3: bucket is required")
	case (c.AccessKeyID == "") != (c.SecretAccessKey == ""):
		return fmt.Errorf("s3 bucket %q: give both access key ID and secret access key, or neither to use the AWS default credentials", c.Bucket)
	case c.PartSize != 0 && c.PartSize < MinPartSize:
		return fmt.Errorf("s3 bucket %q: part size %d is below the S3 minimum of %d bytes", c.Bucket, c.PartSize, MinPartSize)
	case c.Concurrency < 0:
		return fmt.Errorf("s3 bucket %q: negative concurrency %d", c.Bucket, c.Concurrency)
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("s3 bucket %q: endpoint %q must be an http:// or https:// URL", c.Bucket, c.Endpoint)
		}
		if u.User != nil {
			return fmt.Errorf("s3 bucket %q: endpoint must not contain credentials; use the access key settings", c.Bucket)
		}
	}
	if p := strings.Trim(c.Prefix, "/"); p != "" {
		if err := artifact.ValidateKey(p); err != nil {
			return fmt.Errorf("s3 bucket %q: prefix: %w", c.Bucket, err)
		}
	}
	return nil
}

// hint guesses the likely cause of a failed HeadBucket for the message.
func hint(err error, cfg Config) string {
	creds := "the AWS default credential chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, roles)"
	if cfg.AccessKeyID != "" {
		creds = fmt.Sprintf("access key %q and its secret", cfg.AccessKeyID)
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "NoSuchBucket":
			return "bucket does not exist: create it or fix the bucket name"
		case "InvalidAccessKeyId", "XAdminUserNotFound":
			return "unknown access key: check " + creds
		case "SignatureDoesNotMatch":
			return "wrong secret access key: check " + creds
		case "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException":
			return "the bucket is in another region: set region"
		}
	}
	switch status(err) {
	case 403:
		return "access denied: check " + creds + " and the bucket policy"
	case 404:
		return "bucket not found (or unknown access key): check the bucket name and " + creds
	case 301:
		return "the bucket is in another region: set region"
	case 0:
		if strings.Contains(err.Error(), "credentials") {
			return "no usable credentials: set access_key_id and secret_access_key, or configure the AWS default chain"
		}
	}
	if cfg.Endpoint != "" && !cfg.PathStyle {
		return "cannot talk to the endpoint: is it up, and does it need path_style = true?"
	}
	return "cannot talk to the endpoint: check endpoint, network and TLS"
}

// status returns the HTTP status of an S3 error response, or 0.
func status(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// isNotFound reports whether err says the object does not exist. A missing
// bucket is not a missing object (though HeadObject cannot tell them apart).
func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchBucket" {
		return false
	}
	return status(err) == 404
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// String returns "s3://bucket[/prefix]", followed by " at <endpoint>" for
// non-AWS services.
func (s *Store) String() string { return s.where }

func (s *Store) objectKey(key string) (string, error) {
	if err := artifact.ValidateKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}

// Put implements artifact.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	k, err := s.objectKey(key)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	// Counting also hides io.Seeker/ReaderAt, so even files are streamed
	// part by part rather than sized up front.
	cr := &countingReader{r: r}
	_, err = s.uploader.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: &s.bucket, Key: &k, Body: cr})
	if err != nil {
		return 0, fmt.Errorf("put %s in %s: %w", key, s, err)
	}
	return cr.n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Get implements artifact.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	k, err := s.objectKey(key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &k})
	if err != nil {
		return nil, fmt.Errorf("get %s from %s: %w", key, s, s.wrap(err))
	}
	return out.Body, nil
}

// Stat implements artifact.Store.
func (s *Store) Stat(ctx context.Context, key string) (artifact.Info, error) {
	k, err := s.objectKey(key)
	if err != nil {
		return artifact.Info{}, fmt.Errorf("stat %s: %w", key, err)
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &k})
	if err != nil {
		return artifact.Info{}, fmt.Errorf("stat %s in %s: %w", key, s, s.wrap(err))
	}
	return artifact.Info{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}, nil
}

func (s *Store) wrap(err error) error {
	if isNotFound(err) {
		return fmt.Errorf("%w: %w", artifact.ErrNotFound, err)
	}
	return err
}

// List implements artifact.Store. Objects under the prefix whose names are
// not valid keys (e.g. "dir/" markers made by other tools) are left out.
func (s *Store) List(ctx context.Context, prefix string) ([]artifact.Info, error) {
	if err := artifact.ValidatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	out := []artifact.Info{}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: &s.bucket, Prefix: aws.String(s.prefix + prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %q in %s: %w", prefix, s, err)
		}
		for _, o := range page.Contents {
			key, ok := strings.CutPrefix(aws.ToString(o.Key), s.prefix)
			if !ok || artifact.ValidateKey(key) != nil {
				continue
			}
			out = append(out, artifact.Info{Key: key, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements artifact.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	k, err := s.objectKey(key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &k})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s from %s: %w", key, s, err)
	}
	return nil
}
