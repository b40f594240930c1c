// Package pgtest starts throwaway PostgreSQL clusters for tests.
//
// Each cluster is initdb'ed into its own temporary directory, listens on a
// free loopback port with wal_level=logical and room for slots and senders,
// and is removed when stopped. When the tests run as root the server runs
// as the "postgres" OS user (PostgreSQL refuses to run as root). The server
// is started with a parent-death signal, so a test binary that panics or is
// killed takes its clusters with it; directories left behind by such a
// crash are removed by the next Start.
//
// Binaries are taken from $BTFU_TEST_PG_BIN when set (the version matrix
// points it at another major), else from the newest install found by
// package pgbin.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/internal/tempserver"
	"github.com/btfu/btfu/pgbin"
)

// EnvBin selects the directory holding initdb and postgres.
const EnvBin = "BTFU_TEST_PG_BIN"

// Options tune a cluster. The zero value gives a logical-replication-ready
// server.
type Options struct {
	BinDir   string            // default: $BTFU_TEST_PG_BIN or the newest install
	WALLevel string            // default "logical"
	Settings map[string]string // extra postgresql.conf settings
}

// Cluster is a running throwaway server. Its superuser is "postgres" and
// needs no password on loopback; other roles authenticate with SCRAM.
type Cluster struct {
	BinDir  string
	BaseDir string // removed on Stop
	DataDir string
	SockDir string
	LogFile string
	Host    string
	Port    int
	Major   int
	Version string

	opts    Options
	cred    *syscall.Credential
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	stopped atomic.Bool
}

const dirPrefix = "btfu-pgtest-"

// Start creates and starts a cluster.
func Start(opts Options) (*Cluster, error) {
	cleanStale()
	bin, err := binDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	ver, major, err := serverVersion(bin)
	if err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(base, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	c := &Cluster{
		BinDir: bin, BaseDir: base,
		DataDir: filepath.Join(base, "data"), SockDir: filepath.Join(base, "sock"),
		LogFile: filepath.Join(base, "server.log"),
		Host:    "127.0.0.1", Major: major, Version: ver, opts: opts,
	}
	if err := c.prepareUser(); err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	if err := c.initdb(); err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	// A free port can be taken by someone else between our probe and the
	// server's bind; try a few.
	for attempt := 0; ; attempt++ {
		c.Port, err = tempserver.FreePort()
		if err == nil {
			err = c.start()
		}
		if err == nil {
			return c, nil
		}
		if attempt == 4 || !strings.Contains(err.Error(), "in use") {
			os.RemoveAll(base)
			return nil, err
		}
	}
}

func binDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv(EnvBin)
	}
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err != nil {
			return "", fmt.Errorf("pgtest: no initdb in %s (from %s): %w", dir, EnvBin, err)
		}
		return dir, nil
	}
	progs := pgbin.All(context.Background(), "initdb")
	if len(progs) == 0 {
		return "", errors.New("pgtest: initdb not found in $PATH or /usr/lib/postgresql/*/bin; install PostgreSQL (Debian: apt-get install postgresql) or set " + EnvBin)
	}
	path := progs[len(progs)-1].Path
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real // the install's own bin directory, with postgres, pgbench...
	}
	return filepath.Dir(path), nil
}

func serverVersion(bin string) (string, int, error) {
	out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output()
	if err != nil {
		return "", 0, fmt.Errorf("pgtest: %s/postgres --version: %w", bin, err)
	}
	return pgbin.ParseVersion(string(out))
}

// prepareUser arranges for the server to run as "postgres" when we are root,
// and hands it the directory.
func (c *Cluster) prepareUser() error {
	if os.Geteuid() != 0 {
		return os.Mkdir(c.SockDir, 0o700)
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("pgtest: running as root needs a 'postgres' OS user to run the server (apt-get install postgresql creates it): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if err := os.Mkdir(c.SockDir, 0o700); err != nil {
		return err
	}
	for _, p := range []string{c.BaseDir, c.SockDir} {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.BinDir, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	if ld := os.Getenv("BTFU_TEST_PG_LD_LIBRARY_PATH"); ld != "" {
		cmd.Env = append(cmd.Env, "LD_LIBRARY_PATH="+ld)
	}
	cmd.Dir = c.BaseDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGKILL}
	return cmd
}

func (c *Cluster) initdb() error {
	cmd := c.command("initdb", "-D", c.DataDir, "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync", "-A", "trust")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	hba := strings.Join([]string{
		"local all all trust",
		"local replication all trust",
		"host all postgres 127.0.0.1/32 trust",
		"host replication postgres 127.0.0.1/32 trust",
		"host all all 127.0.0.1/32 scram-sha-256",
		"host replication all 127.0.0.1/32 scram-sha-256",
		"",
	}, "\n")
	return c.writeDataFile("pg_hba.conf", hba)
}

func (c *Cluster) writeDataFile(name, content string) error {
	p := filepath.Join(c.DataDir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		return err
	}
	if c.cred != nil {
		return os.Chown(p, int(c.cred.Uid), int(c.cred.Gid))
	}
	return nil
}

func (c *Cluster) settings() []string {
	s := map[string]string{
		"listen_addresses":        c.Host,
		"port":                    strconv.Itoa(c.Port),
		"unix_socket_directories": c.SockDir,
		"wal_level":               "logical",
		"max_replication_slots":   "20",
		"max_wal_senders":         "20",
		"max_connections":         "60",
		"shared_buffers":          "32MB",
		"fsync":                   "off",
		"full_page_writes":        "off",
		"synchronous_commit":      "on",
		"log_min_messages":        "warning",
		"timezone":                "UTC",
	}
	if c.opts.WALLevel != "" {
		s["wal_level"] = c.opts.WALLevel
	}
	for k, v := range c.opts.Settings {
		s[k] = v
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"-D", c.DataDir}
	for _, k := range keys {
		args = append(args, "-c", k+"="+s[k])
	}
	return args
}

func (c *Cluster) start() error {
	logf, err := os.OpenFile(c.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := c.command("postgres", c.settings()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	c.cmd = cmd
	c.exited = make(chan struct{})
	go func() {
		c.waitErr = cmd.Wait()
		logf.Close()
		close(c.exited)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-c.exited:
			return fmt.Errorf("pgtest: postgres exited during start (%v):\n%s", c.waitErr, c.logTail())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		if time.Now().After(deadline) {
			c.kill()
			return fmt.Errorf("pgtest: postgres did not accept connections within 60s: %v\n%s", err, c.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) logTail() string {
	b, _ := os.ReadFile(c.LogFile)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (c *Cluster) kill() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
}

// StopServer shuts the server down (fast mode) but keeps its files, so
// Restart can bring it back; tests use it to cut a source under load.
func (c *Cluster) StopServer() error {
	if c.cmd == nil || c.cmd.Process == nil {
		return nil
	}
	select {
	case <-c.exited:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.kill()
	}
	return nil
}

// Restart stops the server if it runs and starts it again on the same port
// and data directory.
func (c *Cluster) Restart() error {
	if err := c.StopServer(); err != nil {
		return err
	}
	return c.start()
}

// Stop shuts the server down and removes every file it had. Safe to call
// more than once.
func (c *Cluster) Stop() error {
	if c == nil || !c.stopped.CompareAndSwap(false, true) {
		return nil
	}
	_ = c.StopServer()
	return os.RemoveAll(c.BaseDir)
}

// DSN returns a URL connection string for the superuser and database db.
func (c *Cluster) DSN(db string) string {
	return c.DSNFor("postgres", "", db)
}

// DSNFor returns a URL connection string for role user with password
// (may be empty) and database db.
func (c *Cluster) DSNFor(role, password, db string) string {
	userinfo := role
	if password != "" {
		userinfo += ":" + password
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", userinfo, c.Host, c.Port, db)
}

// cleanStale removes directories of clusters whose test binary died
// without stopping them: the postmaster got SIGKILL with its owner, so
// nothing may still run from the data directory.
func cleanStale() {
	tempserver.CleanStale(dirPrefix, func(dir string) {
		if pm, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			if line, _, _ := strings.Cut(string(pm), "\n"); line != "" {
				if p, err := strconv.Atoi(strings.TrimSpace(line)); err == nil {
					_ = syscall.Kill(p, syscall.SIGKILL)
				}
			}
		}
	})
}
