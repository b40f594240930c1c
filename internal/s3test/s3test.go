// Package s3test starts throwaway S3 servers (versitygw with its posix
// backend) for tests.
//
// Each server serves a fresh temporary directory on a free loopback port
// with random root credentials, and is removed when stopped. It is started
// with a parent-death signal, so a test binary that panics or is killed
// takes it along; directories left behind by such a crash are removed by
// the next Start.
//
// The versitygw binary is looked up first among the repository's test
// tools ($BTFU_TOOLS_BIN, else .tools/bin at the module root, where `make
// tools` installs the pinned version), then in $PATH, $(go env GOBIN),
// $GOPATH/bin and ~/go/bin. When it is missing Start fails (tests never
// skip) saying how to install it: `make tools`, or InstallCommand.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/btfu/btfu/internal/tempserver"
)

// InstallCommand installs the versitygw version the tests are written for
// (the Makefile's VERSITYGW_VERSION).
const InstallCommand = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// ToolsBinEnv names the directory of the repository's test tools; the
// Makefile sets it to .tools/bin.
const ToolsBinEnv = "BTFU_TOOLS_BIN"

// Region is the region the server answers for.
const Region = "us-east-1"

const dirPrefix = "btfu-s3test-"

// Server is a running versitygw. Buckets are directories in DataDir.
type Server struct {
	Binary  string
	BaseDir string // removed on Stop
	DataDir string
	LogFile string

	endpoint, access, secret string
	client                   *s3.Client
	cmd                      *exec.Cmd
	exited                   chan struct{}
	waitErr                  error
	stopped                  atomic.Bool
}

var bucketCounter atomic.Int64

// Start starts a server and waits until it answers S3 requests.
func Start() (*Server, error) {
	cleanStale()
	bin, err := findBinary()
	if err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	s := &Server{
		Binary: bin, BaseDir: base,
		DataDir: filepath.Join(base, "data"), LogFile: filepath.Join(base, "server.log"),
		access: "btfu" + randomHex(8), secret: randomHex(20),
	}
	err = os.WriteFile(filepath.Join(base, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644)
	if err == nil {
		err = os.Mkdir(s.DataDir, 0o700)
	}
	if err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	// A free port can be taken by someone else between our probe and the
	// server's bind; try a few.
	for attempt := 0; ; attempt++ {
		var port int
		if port, err = tempserver.FreePort(); err == nil {
			err = s.start(port)
		}
		if err == nil {
			return s, nil
		}
		if attempt == 4 || !strings.Contains(err.Error(), "in use") {
			os.RemoveAll(base)
			return nil, err
		}
	}
}

func findBinary() (string, error) {
	for _, d := range toolsDirs() {
		if p := filepath.Join(d, "versitygw"); isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	gobin, gopath := os.Getenv("GOBIN"), os.Getenv("GOPATH")
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		if lines := strings.Split(string(out), "\n"); len(lines) >= 2 {
			gobin, gopath = strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1])
		}
	}
	dirs := []string{gobin}
	for _, p := range filepath.SplitList(gopath) {
		dirs = append(dirs, filepath.Join(p, "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if p := filepath.Join(d, "versitygw"); isExecutable(p) {
			return p, nil
		}
	}
	return "", errors.New("s3test: versitygw not found in $" + ToolsBinEnv + ", .tools/bin, $PATH, $(go env GOBIN), $GOPATH/bin or ~/go/bin; " +
		"run 'make tools' at the repository's root (make test does it), or install it with: " + InstallCommand)
}

// toolsDirs are where the repository's test tools live: $BTFU_TOOLS_BIN,
// and .tools/bin in the module root above the working directory (go test
// runs in the package's directory).
func toolsDirs() []string {
	var dirs []string
	if d := os.Getenv(ToolsBinEnv); d != "" {
		dirs = append(dirs, d)
	}
	dir, err := os.Getwd()
	for err == nil {
		if _, statErr := os.Stat(filepath.Join(dir, "go.mod")); statErr == nil {
			return append(dirs, filepath.Join(dir, ".tools", "bin"))
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return dirs
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func (s *Server) start(port int) error {
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(s.Binary, "--port", addr, "--region", Region, "--quiet", "posix", s.DataDir)
	// Credentials go by environment so they do not show in ps.
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.access, "ROOT_SECRET_ACCESS_KEY="+s.secret)
	cmd.Dir = s.BaseDir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("s3test: start %s: %w", s.Binary, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() {
		s.waitErr = cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	_ = os.WriteFile(filepath.Join(s.BaseDir, "server.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	s.endpoint = "http://" + addr
	s.client = s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.access, s.secret, ""),
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("s3test: versitygw exited during start (%v):\n%s", s.waitErr, s.logTail())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := s.client.ListBuckets(ctx, &s3.ListBucketsInput{})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("s3test: versitygw did not answer at %s within 30s: %v\n%s", s.endpoint, err, s.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.LogFile)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (s *Server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// Stop shuts the server down and removes every file it had. Safe to call
// more than once.
func (s *Server) Stop() error {
	if s == nil || !s.stopped.CompareAndSwap(false, true) {
		return nil
	}
	s.kill()
	return os.RemoveAll(s.BaseDir)
}

// Endpoint returns the server's URL, "http://127.0.0.1:<port>". Clients
// must use path-style addressing.
func (s *Server) Endpoint() string { return s.endpoint }

// AccessKey returns the root access key ID.
func (s *Server) AccessKey() string { return s.access }

// SecretKey returns the root secret access key.
func (s *Server) SecretKey() string { return s.secret }

// Client returns an S3 client for the server with root credentials.
func (s *Server) Client() *s3.Client { return s.client }

// CreateBucket creates a fresh, uniquely named bucket and returns its name.
// It is removed with everything in it when the test ends.
func (s *Server) CreateBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", bucketCounter.Add(1), sanitize(t.Name()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Join(s.DataDir, name)) })
	return name
}

// sanitize makes s usable in a bucket name: lowercase letters, digits and
// single hyphens, at most 40 characters, not ending in a hyphen.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	out := b.String()
	if len(out) > 40 {
		out = out[len(out)-40:]
	}
	return strings.Trim(out, "-")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// cleanStale removes directories of servers whose test binary died
// without stopping them: the server got SIGKILL with its owner, so make
// sure it is gone.
func cleanStale() {
	tempserver.CleanStale(dirPrefix, func(dir string) {
		if p, err := tempserver.ReadPid(filepath.Join(dir, "server.pid")); err == nil {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p)); strings.TrimSpace(string(comm)) == "versitygw" {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
	})
}
