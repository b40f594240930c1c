package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/logging"
)

var source *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &source)) }

const token = "0123456789abcdef-token"

// daemon is a real engine on a harness database with the API on its unix
// socket and a loopback TCP port.
type daemon struct {
	eng    *engine.Engine
	db     string
	socket string
	tcp    string // host:port
}

// running starts an engine with one source "app" and serves the API with
// opts until the test ends.
func running(t *testing.T, opts Options) *daemon { return runningWith(t, opts, nil) }

// runningWith calls beforeStart with the source database before the
// engine starts.
func runningWith(t *testing.T, opts Options, beforeStart func(db string)) *daemon {
	t.Helper()
	return runningConf(t, opts, beforeStart, "", io.Discard)
}

// runningConf adds extra to the source's config block and logs to log.
func runningConf(t *testing.T, opts Options, beforeStart func(db string), extra string, log io.Writer) *daemon {
	t.Helper()
	db := source.CreateDB(t)
	source.Exec(t, db, "CREATE TABLE t(id serial PRIMARY KEY, v text)")
	if beforeStart != nil {
		beforeStart(db)
	}
	dir := t.TempDir()
	text := []byte(fmt.Sprintf(`
[metadata]
path = %q
[storage]
path = %q
[engine]
spool_dir = %q
[api]
listen = "127.0.0.1:0"
token = %q
[[source]]
name = "app"
dsn = %q
slot = "s_%s"
schedule = "off"
%s
`, filepath.Join(dir, "btfu.db"), filepath.Join(dir, "data"), t.TempDir(), token, source.DSN(db), db, extra))
	// The file too: registering a source appends to it.
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), text, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(filepath.Join(dir, "config.toml"), text)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "btfu.sock"); cfg.SocketPath() != want {
		t.Fatalf("socket path %s, want %s beside the metadata file", cfg.SocketPath(), want)
	}
	eng, err := engine.Open(context.Background(), cfg, logging.New(config.Log{Format: "json", Level: "debug"}, log))
	if err != nil {
		t.Fatal(err)
	}
	ls, err := Listeners(cfg.SocketPath(), cfg.API.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	apiDone := New(eng, opts).Start(ctx, ls)
	engDone := make(chan error, 1)
	go func() { engDone <- eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-engDone; err != nil {
			t.Errorf("engine: %v", err)
		}
		if err := <-apiDone; err != nil {
			t.Errorf("api: %v", err)
		}
		if _, err := os.Stat(cfg.SocketPath()); !os.IsNotExist(err) {
			t.Errorf("socket file left after the API stopped: %v", err)
		}
		eng.Close()
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 's_%s%%' AND NOT active", db))
	})
	return &daemon{eng: eng, db: db, socket: cfg.SocketPath(), tcp: ls[1].Addr().String()}
}

func (d *daemon) client(t *testing.T) *Client {
	t.Helper()
	c, err := Dial(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// raw sends a request and returns the status and body.
func raw(t *testing.T, c *Client, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// waitFor polls path until its status code is code and its body holds
// want.
func waitFor(t *testing.T, c *Client, path string, code int, want string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, body := raw(t, c, http.MethodGet, path)
		if got == code && strings.Contains(body, want) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %s; want %d with %q", path, got, body, code, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitStreaming waits until the source streams: /health turns ok as the
// first base backup is stored, a moment before the state turns to
// streaming, and a backup on demand needs it streaming.
func waitStreaming(t *testing.T, eng *engine.Engine) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); sourceStatus(t, eng).State != "streaming"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not streaming after its first base backup: %+v", sourceStatus(t, eng))
		}
	}
}

func sourceStatus(t *testing.T, eng *engine.Engine) engine.SourceStatus {
	t.Helper()
	st, err := eng.Status(context.Background())
	if err != nil || len(st.Sources) != 1 {
		t.Fatalf("status: %+v %v", st, err)
	}
	return st.Sources[0]
}

func TestHealthSourcesCoverageAndControl(t *testing.T) {
	d := running(t, Options{Token: token})
	fi, err := os.Stat(d.socket)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket %s: %v %v", d.socket, fi.Mode(), err)
	}
	c := d.client(t)
	waitFor(t, c, "/health", 200, `"status": "ok"`)

	var st engine.Status
	if err := c.Do(context.Background(), http.MethodGet, "/v1/sources", &st); err != nil || len(st.Sources) != 1 || !st.Sources[0].Streaming {
		t.Fatalf("sources: %+v %v", st, err)
	}
	var cov Coverage
	if err := c.Do(context.Background(), http.MethodGet, "/v1/sources/app/coverage", &cov); err != nil || len(cov.BaseBackups) != 1 || len(cov.Ranges) != 1 {
		t.Fatalf("coverage: %+v %v", cov, err)
	}

	// Unknown sources and routes answer JSON errors.
	for _, tc := range []struct {
		method, path string
		code         int
		want         string
	}{
		{"GET", "/v1/sources/nope/coverage", 404, `no source \"nope\"`},
		{"POST", "/v1/sources/nope/backup", 404, `no source \"nope\"`},
		{"POST", "/v1/sources/nope/pause", 404, `no source \"nope\"`},
		{"POST", "/v1/sources/nope/resume", 404, `no source \"nope\"`},
		{"POST", "/v1/sources/app/explode", 404, "no endpoint"},
		{"GET", "/v2", 404, "no endpoint"},
		{"POST", "/health", 405, "use GET"},
		{"GET", "/v1/sources/app/backup", 405, "use POST"},
		{"GET", "/v1/events?since=yesterday", 400, "neither an RFC 3339 time"},
	} {
		code, body := raw(t, c, tc.method, tc.path)
		var e Error
		if code != tc.code || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s: %d %s; want %d with %q", tc.method, tc.path, code, body, tc.code, tc.want)
		}
	}

	// Backup now: answers with the stored record, which status and
	// coverage then show. The first base backup is stored a moment
	// before the source turns from backing_up to streaming, and a backup
	// on demand needs it streaming.
	waitStreaming(t, d.eng)
	var b BaseBackup
	if err := c.Do(context.Background(), http.MethodPost, "/v1/sources/app/backup", &b); err != nil || b.Status != "complete" || b.Key == "" || b.Bytes == 0 {
		t.Fatalf("backup: %+v %v", b, err)
	}
	if ss := sourceStatus(t, d.eng); ss.BaseBackups != 2 || ss.LastBackup == nil || ss.LastBackup.Key != b.Key {
		t.Fatalf("status after backup %s: %+v", b.Key, ss)
	}
	if err := c.Do(context.Background(), http.MethodGet, "/v1/sources/app/coverage", &cov); err != nil || len(cov.BaseBackups) != 2 {
		t.Fatalf("coverage after backup: %+v %v", cov, err)
	}

	// Pause: recorded in the metadata, the engine stops streaming, /health
	// says which source and why with 503.
	var p Paused
	if err := c.Do(context.Background(), http.MethodPost, "/v1/sources/app/pause", &p); err != nil || !p.Paused {
		t.Fatalf("pause: %+v %v", p, err)
	}
	if rec, err := d.eng.SourceRecord(context.Background(), "app"); err != nil || !rec.Paused {
		t.Fatalf("metadata after pause: %+v %v", rec, err)
	}
	body := waitFor(t, c, "/health", 503, "paused")
	var h Health
	if err := json.Unmarshal([]byte(body), &h); err != nil || h.Status != "unhealthy" || len(h.Failing) != 1 || h.Failing[0].Source != "app" || !strings.Contains(h.Failing[0].Why, "paused") {
		t.Fatalf("health while paused: %s (%v)", body, err)
	}
	if ss := sourceStatus(t, d.eng); !ss.Paused || ss.State == "streaming" {
		t.Fatalf("status while paused: %+v", ss)
	}
	waitFor(t, c, "/metrics", 200, `btfu_source_up{source="app"} 0`)
	if code, body := raw(t, c, http.MethodPost, "/v1/sources/app/backup"); code != http.StatusConflict || !strings.Contains(body, "needs it streaming") {
		t.Fatalf("backup while paused: %d %s", code, body)
	}

	// Resume: recorded, streaming again, healthy.
	if err := c.Do(context.Background(), http.MethodPost, "/v1/sources/app/resume", &p); err != nil || p.Paused {
		t.Fatalf("resume: %+v %v", p, err)
	}
	if rec, err := d.eng.SourceRecord(context.Background(), "app"); err != nil || rec.Paused {
		t.Fatalf("metadata after resume: %+v %v", rec, err)
	}
	waitFor(t, c, "/health", 200, `"status": "ok"`)
	if ss := sourceStatus(t, d.eng); ss.Paused || ss.State != "streaming" {
		t.Fatalf("status after resume: %+v", ss)
	}

	// Events, all and since a time.
	var evs []engine.EventRecord
	if err := c.Do(context.Background(), http.MethodGet, "/v1/events", &evs); err != nil || len(evs) == 0 {
		t.Fatalf("events: %d %v", len(evs), err)
	}
	kinds := map[string]bool{}
	for _, ev := range evs {
		kinds[ev.Kind] = true
	}
	if !kinds["source.pause"] || !kinds["source.resume"] || !kinds["backup.finished"] {
		t.Errorf("events lack pause, resume or backup: %v", kinds)
	}
	last := evs[len(evs)-1].At
	if err := c.Do(context.Background(), http.MethodGet, "/v1/events?since="+last.Format(time.RFC3339Nano), &evs); err != nil || len(evs) != 0 {
		t.Fatalf("events since the last one: %+v %v", evs, err)
	}
	if err := c.Do(context.Background(), http.MethodGet, "/v1/events?since=1h", &evs); err != nil || len(evs) == 0 {
		t.Fatalf("events of the last hour: %d %v", len(evs), err)
	}
}

// Until the first base backup is stored nothing is restorable: /health
// says so, and btfu_source_up is 0.
func TestHealthFailsUntilTheFirstBaseBackupIsStored(t *testing.T) {
	ctx := context.Background()
	var hold pgx.Tx
	d := runningWith(t, Options{Token: token}, func(db string) {
		// Slot creation waits for every transaction holding an ID.
		tx, err := source.Connect(t, db).Begin(ctx)
		if err == nil {
			_, err = tx.Exec(ctx, "SELECT txid_current()")
		}
		if err != nil {
			t.Fatal(err)
		}
		hold = tx
	})
	defer hold.Rollback(ctx)
	c := d.client(t)
	for deadline := time.Now().Add(30 * time.Second); sourceStatus(t, d.eng).State != "backing_up"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the first base backup never started: %+v", sourceStatus(t, d.eng))
		}
	}
	waitFor(t, c, "/health", 503, "no base backup yet: nothing is restorable")
	if _, body := raw(t, c, http.MethodGet, "/metrics"); !strings.Contains(body, `btfu_source_up{source="app"} 0`) {
		t.Errorf("metrics during the first base backup:\n%s", body)
	}
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "/health", 200, `"status": "ok"`)
	if _, body := raw(t, c, http.MethodGet, "/metrics"); !strings.Contains(body, `btfu_source_up{source="app"} 1`) {
		t.Errorf("metrics once streaming:\n%s", body)
	}
}

// A client that goes away cancels the backup it asked for.
func TestBackupFollowsTheRequestContext(t *testing.T) {
	d := running(t, Options{Token: token})
	c := d.client(t)
	waitFor(t, c, "/health", 200, `"status": "ok"`)
	waitStreaming(t, d.eng)
	// pg_dump (and the backup's slot) wait behind this lock, so the
	// backup is still running when the client gives up.
	lock := source.Connect(t, d.db)
	if _, err := lock.Exec(context.Background(), "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Do(ctx, http.MethodPost, "/v1/sources/app/backup", nil) }()
	deadline := time.Now().Add(30 * time.Second)
	for sourceStatus(t, d.eng).State != "backing_up" {
		if time.Now().After(deadline) {
			t.Fatal("the backup never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("cancelled request succeeded")
	}
	// The backup stops while the lock is still held: it was cancelled.
	deadline = time.Now().Add(30 * time.Second)
	for sourceStatus(t, d.eng).State != "streaming" {
		if time.Now().After(deadline) {
			t.Fatal("the backup went on after its client left")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := lock.Exec(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "/health", 200, `"status": "ok"`)
	if ss := sourceStatus(t, d.eng); ss.BaseBackups != 1 {
		t.Fatalf("a cancelled backup was kept: %d base backups", ss.BaseBackups)
	}
}

func TestMetricsAreValidPrometheusText(t *testing.T) {
	d := running(t, Options{Token: token})
	c := d.client(t)
	waitFor(t, c, "/health", 200, `"status": "ok"`)
	// Traffic, so segments are stored, and an error event to count.
	source.Exec(t, d.db, "INSERT INTO t(v) SELECT 'x' FROM generate_series(1, 100)")
	d.eng.Event(context.Background(), 0, slog.LevelError, "test.failure", "a failure to count", map[string]string{"source": "app"})
	d.eng.Event(context.Background(), 0, slog.LevelWarn, "test.warning", "a warning not to count", map[string]string{"source": "app"})
	waitFor(t, c, "/metrics", 200, `btfu_errors_total{source="app",category="test"} 1`)
	waitFor(t, c, "/metrics", 200, `btfu_segments_stored_total{source="app"} 1`)

	req, _ := http.NewRequest(http.MethodGet, c.base+"/metrics", nil)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("content type %q", ct)
	}
	samples := parseExposition(t, string(b))
	for _, want := range []string{
		`btfu_lag_bytes{source="app"}`, `btfu_rpo_seconds{source="app"}`, `btfu_flushed_lsn{source="app"}`,
		`btfu_segments_stored_total{source="app"}`, `btfu_segment_bytes_stored{source="app"}`,
		`btfu_base_backup_age_seconds{source="app"}`, `btfu_base_backup_duration_seconds{source="app"}`,
		`btfu_source_up{source="app"}`, `btfu_errors_total{source="app",category="test"}`,
	} {
		if _, ok := samples[want]; !ok {
			t.Errorf("no sample %s in:\n%s", want, b)
		}
	}
	// Retained WAL has a sample only once the worker has measured it
	// (and the engine reports 0 as unknown); its family is always there.
	if !strings.Contains(string(b), "# TYPE btfu_retained_wal_bytes gauge\n") {
		t.Errorf("no btfu_retained_wal_bytes family")
	}
	if samples[`btfu_source_up{source="app"}`] != 1 || samples[`btfu_errors_total{source="app",category="test"}`] != 1 {
		t.Errorf("source_up or errors_total wrong:\n%s", b)
	}
	if lsn := sourceStatus(t, d.eng).FlushedLSN; samples[`btfu_flushed_lsn{source="app"}`] == 0 || lsn == "0/0" {
		t.Errorf("flushed LSN %s, metric %v", lsn, samples[`btfu_flushed_lsn{source="app"}`])
	}
}

func TestTokenIsRequiredFromOtherMachines(t *testing.T) {
	d := running(t, Options{Token: token})
	h := New(d.eng, Options{Token: token}).Handler()
	for _, tc := range []struct {
		remote, auth string
		want         int
	}{
		{"10.0.0.5:1234", "", http.StatusUnauthorized},
		{"10.0.0.5:1234", "Bearer wrong-token-0123456789", http.StatusUnauthorized},
		{"10.0.0.5:1234", "Basic " + token, http.StatusUnauthorized},
		{"10.0.0.5:1234", "Bearer " + token, http.StatusOK},
		{"10.0.0.5:1234", "bearer " + token, http.StatusOK},
		{"[2001:db8::1]:1234", "", http.StatusUnauthorized},
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
		if rec.Code == http.StatusUnauthorized && (rec.Header().Get("WWW-Authenticate") == "" || !strings.Contains(rec.Body.String(), `"error"`) || strings.Contains(rec.Body.String(), token)) {
			t.Errorf("401 answer: %v %s", rec.Header(), rec.Body)
		}
	}
	// Without a token, other machines are refused whatever they send.
	req := httptest.NewRequest(http.MethodGet, "/health", nil)
	req.RemoteAddr = "192.168.1.9:40000"
	req.Header.Set("Authorization", "Bearer ")
	rec := httptest.NewRecorder()
	New(d.eng, Options{}).Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("no token configured, remote client: %d", rec.Code)
	}
	// The real TCP listener serves loopback clients without a token.
	resp, err := http.Get("http://" + d.tcp + "/v1/sources")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("loopback TCP: %d", resp.StatusCode)
	}
}

// With RequireToken, real TCP requests need the token even from
// loopback; the unix socket never does.
func TestRequireTokenOverRealTCP(t *testing.T) {
	d := running(t, Options{Token: token, RequireToken: true})
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer not-the-token-0123456", http.StatusUnauthorized},
		{"Bearer " + token, http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+d.tcp+"/v1/sources", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("TCP %q: %d %s, want %d", tc.auth, resp.StatusCode, body, tc.want)
		}
	}
	// The client sends the token it is given.
	c, err := DialTCP(d.tcp, token)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Do(context.Background(), http.MethodGet, "/v1/sources", nil); err != nil {
		t.Fatalf("client with the token: %v", err)
	}
	c, err = DialTCP(d.tcp, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Do(context.Background(), http.MethodGet, "/v1/sources", nil); err == nil || !strings.Contains(err.Error(), "bearer token") {
		t.Fatalf("client without the token: %v", err)
	}
	if code, body := raw(t, d.client(t), http.MethodGet, "/v1/sources"); code != 200 {
		t.Fatalf("unix socket without a token: %d %s", code, body)
	}
}
