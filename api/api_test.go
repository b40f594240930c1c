package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/internal/pgtest"
)

var source *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &source)) }

const token = "0123456789abcdef-token"

// running starts a real engine on a harness database and serves the API
// on a unix socket and a loopback TCP port.
func running(t *testing.T) (eng *engine.Engine, socket, tcp string) {
	t.Helper()
	db := source.CreateDB(t)
	source.Exec(t, db, "CREATE TABLE t(id serial PRIMARY KEY, v text)")
	dir := t.TempDir()
	cfg, err := config.Parse(filepath.Join(dir, "config.toml"), []byte(fmt.Sprintf(`
[metadata]
path = %q
[storage]
path = %q
[api]
listen = "127.0.0.1:0"
token = %q
[[source]]
name = "app"
dsn = %q
slot = "s_%s"
schedule = "off"
`, filepath.Join(dir, "btfu.db"), filepath.Join(dir, "data"), token, source.DSN(db), db)))
	if err != nil {
		t.Fatal(err)
	}
	eng, err = engine.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ls, err := Listeners(cfg.SocketPath(), cfg.API.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { eng.Run(ctx); done <- struct{}{} }()
	go func() { New(eng, token).Serve(ctx, ls); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
		eng.Close()
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 's_%s%%' AND NOT active", db))
	})
	return eng, cfg.SocketPath(), ls[1].Addr().String()
}

func get(t *testing.T, c *Client, path string, out any) error {
	t.Helper()
	return c.Do(context.Background(), http.MethodGet, path, out)
}

func waitHealthy(t *testing.T, c *Client) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for get(t, c, "/health", nil) != nil {
		if time.Now().After(deadline) {
			t.Fatal("never healthy")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestHealthSourcesCoverageAndControl(t *testing.T) {
	eng, socket, _ := running(t)
	fi, err := os.Stat(socket)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %s: %v %v", socket, fi.Mode(), err)
	}
	c, err := Dial(socket)
	if err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, c)

	var st engine.Status
	if err := get(t, c, "/v1/sources", &st); err != nil || len(st.Sources) != 1 || st.Sources[0].State != "streaming" {
		t.Fatalf("sources: %+v %v", st, err)
	}
	var cov Coverage
	if err := get(t, c, "/v1/sources/app/coverage", &cov); err != nil || len(cov.BaseBackups) != 1 || len(cov.Ranges) != 1 {
		t.Fatalf("coverage: %+v %v", cov, err)
	}
	if err := get(t, c, "/v1/sources/nope/coverage", nil); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown source: %v", err)
	}
	var b BaseBackup
	if err := c.Do(context.Background(), http.MethodPost, "/v1/sources/app/backup", &b); err != nil || b.Status != "complete" {
		t.Fatalf("backup: %+v %v", b, err)
	}
	if err := get(t, c, "/v1/sources/app/coverage", &cov); err != nil || len(cov.BaseBackups) != 2 {
		t.Fatalf("coverage after backup: %+v %v", cov, err)
	}

	// Paused: /health says why, with 503.
	if err := c.Do(context.Background(), http.MethodPost, "/v1/sources/app/pause", nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, body := rawGet(t, c, "/health")
		if resp == http.StatusServiceUnavailable && strings.Contains(body, "paused") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health while paused: %d %s", resp, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.Do(context.Background(), http.MethodPost, "/v1/sources/app/resume", nil); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, c)
	var evs []engine.EventRecord
	if err := get(t, c, "/v1/events", &evs); err != nil || len(evs) == 0 {
		t.Fatalf("events: %v %v", len(evs), err)
	}
	_ = eng
}

func rawGet(t *testing.T, c *Client, path string) (int, string) {
	t.Helper()
	resp, err := c.http.Get("http://btfu" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Prometheus text format 0.0.4: comments, then samples
// name{label="value",...} number.
var (
	helpRE   = regexp.MustCompile(`^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$`)
	typeRE   = regexp.MustCompile(`^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$`)
	sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)$`)
)

func TestMetricsAreValidPrometheusText(t *testing.T) {
	_, socket, _ := running(t)
	c, err := Dial(socket)
	if err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, c)
	code, body := rawGet(t, c, "/metrics")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	typed := map[string]bool{}
	helped := map[string]bool{}
	samples := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case helpRE.MatchString(line):
			helped[helpRE.FindStringSubmatch(line)[1]] = true
		case typeRE.MatchString(line):
			typed[typeRE.FindStringSubmatch(line)[1]] = true
		case sampleRE.MatchString(line):
			name := sampleRE.FindStringSubmatch(line)[1]
			if !typed[name] || !helped[name] {
				t.Errorf("sample before its HELP/TYPE: %q", line)
			}
			samples[strings.SplitN(line, " ", 2)[0]] = true
		default:
			t.Errorf("not Prometheus text: %q", line)
		}
	}
	for _, want := range []string{`btfu_lag_bytes{source="app"}`, `btfu_source_up{source="app"}`, `btfu_flushed_lsn{source="app"}`, `btfu_base_backup_age_seconds{source="app"}`} {
		if !samples[want] {
			t.Errorf("no sample %s in:\n%s", want, body)
		}
	}
}

func TestTCPNeedsTheTokenExceptFromLoopback(t *testing.T) {
	eng, _, tcp := running(t)
	h := New(eng, token).Handler()
	for _, tc := range []struct {
		remote, auth string
		want         int
	}{
		{"10.0.0.5:1234", "", http.StatusUnauthorized},
		{"10.0.0.5:1234", "Bearer wrong-token-0123456789", http.StatusUnauthorized},
		{"10.0.0.5:1234", "Bearer " + token, http.StatusOK},
		{"127.0.0.1:5555", "", http.StatusOK},
		{"[::1]:5555", "", http.StatusOK},
	} {
		req := httptest.NewRequest(http.MethodGet, "/v1/sources", nil)
		req.RemoteAddr = tc.remote
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s %q: %d, want %d", tc.remote, tc.auth, rec.Code, tc.want)
		}
	}
	// A server with no token refuses every non-loopback request.
	req := httptest.NewRequest(http.MethodGet, "/health", nil)
	req.RemoteAddr = "192.168.1.9:40000"
	rec := httptest.NewRecorder()
	New(eng, "").Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("no token configured, remote client: %d", rec.Code)
	}
	// The real TCP listener answers loopback clients.
	resp, err := http.Get("http://" + tcp + "/v1/sources")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("loopback TCP: %d", resp.StatusCode)
	}
}

func TestASecondBtfuOnTheSameSocketIsRefused(t *testing.T) {
	_, socket, _ := running(t)
	if _, err := Listeners(socket, ""); err == nil || !strings.Contains(err.Error(), "another btfu is running") {
		t.Fatalf("second listener: %v", err)
	}
	// A stale socket file (nobody listening) is replaced.
	stale := filepath.Join(t.TempDir(), "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	ls, err := Listeners(stale, "")
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	ls[0].Close()
}
