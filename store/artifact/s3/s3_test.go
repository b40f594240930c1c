package s3_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/btfu/btfu/internal/s3test"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/artifacttest"
	"github.com/btfu/btfu/store/artifact/s3"
)

var srv *s3test.Server

func TestMain(m *testing.M) { os.Exit(s3test.Main(m, &srv)) }

func config(bucket string) s3.Config {
	return s3.Config{
		Bucket: bucket, Endpoint: srv.Endpoint(), PathStyle: true, Region: s3test.Region,
		AccessKeyID: srv.AccessKey(), SecretAccessKey: srv.SecretKey(),
		PartSize: artifacttest.PartSize,
	}
}

func newStore(t *testing.T, cfg s3.Config) *s3.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := s3.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	artifacttest.Run(t, func(t *testing.T) artifact.Store { return newStore(t, config(srv.CreateBucket(t))) })
}

func TestContractWithPrefix(t *testing.T) {
	artifacttest.Run(t, func(t *testing.T) artifact.Store {
		bucket := srv.CreateBucket(t)
		// An object beside the prefix must stay invisible.
		key := "btfu/datax"
		if _, err := srv.Client().PutObject(context.Background(), &awss3.PutObjectInput{
			Bucket: &bucket, Key: &key, Body: strings.NewReader("other"),
		}); err != nil {
			t.Fatal(err)
		}
		cfg := config(bucket)
		cfg.Prefix = "/btfu/data/"
		return newStore(t, cfg)
	})
}

func TestPrefixIsJoinedWithSlash(t *testing.T) {
	bucket := srv.CreateBucket(t)
	cfg := config(bucket)
	cfg.Prefix = "backups/prod"
	s := newStore(t, cfg)
	if want := "s3://" + bucket + "/backups/prod at " + srv.Endpoint(); s.String() != want {
		t.Errorf("String() = %q, want %q", s.String(), want)
	}
	artifacttest.MustPut(t, s, "src/dump", []byte("x"))
	if _, err := srv.Client().HeadObject(context.Background(), &awss3.HeadObjectInput{
		Bucket: &bucket, Key: aws.String("backups/prod/src/dump"),
	}); err != nil {
		t.Errorf("object not at backups/prod/src/dump: %v", err)
	}
}

func TestNewFailures(t *testing.T) {
	bucket := srv.CreateBucket(t)
	for _, tc := range []struct {
		name   string
		mod    func(*s3.Config)
		want   []string
		secret string // must not appear
	}{
		{"wrong secret", func(c *s3.Config) { c.SecretAccessKey = "WrongSecret-d41d8cd98f00b204e980" },
			[]string{bucket, srv.Endpoint(), "wrong secret access key", srv.AccessKey()}, "WrongSecret-d41d8cd98f00b204e980"},
		{"unknown access key", func(c *s3.Config) { c.AccessKeyID = "AKIANOBODY" },
			[]string{bucket, "unknown access key", `"AKIANOBODY"`}, srv.SecretKey()},
		{"missing bucket", func(c *s3.Config) { c.Bucket = "no-such-bucket-here" },
			[]string{`"no-such-bucket-here"`, "does not exist"}, srv.SecretKey()},
		{"virtual-host style", func(c *s3.Config) { c.Endpoint, c.PathStyle = localhost(), false },
			[]string{bucket, "path_style"}, srv.SecretKey()},
		{"endpoint down", func(c *s3.Config) { c.Endpoint = "http://127.0.0.1:1" },
			[]string{bucket, "http://127.0.0.1:1", "cannot talk to the endpoint"}, srv.SecretKey()},
		{"endpoint without scheme", func(c *s3.Config) { c.Endpoint = "127.0.0.1:9000" },
			[]string{bucket, "http://"}, srv.SecretKey()},
		{"secret without key", func(c *s3.Config) { c.AccessKeyID = "" },
			[]string{bucket, "both"}, srv.SecretKey()},
		{"part size too small", func(c *s3.Config) { c.PartSize = 1 << 20 },
			[]string{bucket, "part size"}, srv.SecretKey()},
		{"no bucket", func(c *s3.Config) { c.Bucket = "" }, []string{"bucket is required"}, srv.SecretKey()},
		{"bad prefix", func(c *s3.Config) { c.Prefix = "a/../b" }, []string{bucket, "prefix"}, srv.SecretKey()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(bucket)
			tc.mod(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := s3.New(ctx, cfg)
			if err == nil {
				t.Fatalf("New succeeded: %v", s)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not mention %q: %s", w, msg)
				}
			}
			if strings.Contains(msg, tc.secret) {
				t.Errorf("error reveals the secret: %s", msg)
			}
		})
	}
}

// localhost is the server's endpoint by name: with an IP address the SDK
// always uses path-style requests, with a name only when asked to.
func localhost() string { return strings.Replace(srv.Endpoint(), "127.0.0.1", "localhost", 1) }

func TestPathStyle(t *testing.T) {
	cfg := config(srv.CreateBucket(t))
	cfg.Endpoint = localhost()
	s := newStore(t, cfg)
	artifacttest.MustPut(t, s, "k", []byte("v"))
	if got := artifacttest.MustGet(t, s, "k"); string(got) != "v" {
		t.Errorf("got %q", got)
	}
}

func TestDefaultCredentialChain(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey())
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey())
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	cfg := config(srv.CreateBucket(t))
	cfg.AccessKeyID, cfg.SecretAccessKey, cfg.Region = "", "", ""
	s := newStore(t, cfg)
	artifacttest.MustPut(t, s, "k", []byte("v"))
}

// A cancelled multipart upload must not leave parts behind: the abort
// needs a context of its own (the transfer manager's FailTimeout).
func TestCancelledUploadLeavesNoParts(t *testing.T) {
	bucket := srv.CreateBucket(t)
	s := newStore(t, config(bucket))
	ctx, cancel := context.WithCancel(context.Background())
	r := &cancelAt{data: artifacttest.Data(1, 3*artifacttest.PartSize), at: 2*artifacttest.PartSize + 1, cancel: cancel}
	if _, err := s.Put(ctx, "big", r); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put error = %v, want context.Canceled", err)
	}
	out, err := srv.Client().ListMultipartUploads(context.Background(), &awss3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Uploads) != 0 {
		t.Errorf("%d multipart uploads left after a cancelled Put", len(out.Uploads))
	}
}

type cancelAt struct {
	data   []byte
	off    int
	at     int
	cancel context.CancelFunc
}

func (c *cancelAt) Read(p []byte) (int, error) {
	if c.off >= len(c.data) {
		return 0, errors.New("read past the end")
	}
	n := copy(p, c.data[c.off:])
	if c.off += n; c.off >= c.at {
		c.cancel()
	}
	return n, nil
}
