package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/restore"
)

// syncBuffer is a log destination tests read while the engine writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// drillRole is a role with a password that restores run as: its password
// must never leave the engine's process or reach its log.
const drillPassword = "drill-s3cret-pw"

func drillRole(t *testing.T) {
	t.Helper()
	source.Exec(t, "postgres", fmt.Sprintf(`DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'drill') THEN CREATE ROLE drill LOGIN SUPERUSER PASSWORD '%s'; END IF;
	END $$`, drillPassword))
}

// A TUI attached over the socket sees and drives the daemon's engine
// through RemoteEngine: who it is, its configuration without passwords,
// status, live events, backup, pause and resume, probe, coverage, restore
// planning, a restore run in the daemon with progress, and registering a
// second source. No password crosses the API or reaches the log.
func TestRemoteEngineDrivesTheDaemon(t *testing.T) {
	drillRole(t)
	// Runs after the daemon has stopped: the registered source's slot.
	t.Cleanup(func() {
		source.Exec(t, "postgres", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'btfu_notes' AND NOT active")
	})
	target := source.CreateDB(t)
	source.Exec(t, "postgres", "ALTER DATABASE "+target+" OWNER TO drill")
	targetDSN := source.DSNFor("drill", drillPassword, target)
	log := &syncBuffer{}
	d := runningConf(t, Options{Token: token, Version: "1.2.3-test"}, nil, fmt.Sprintf("restore_target = %q", targetDSN), log)
	waitStreaming(t, d.eng)
	source.Exec(t, d.db, "INSERT INTO t(v) SELECT 'row ' || g FROM generate_series(1, 25) g")
	ctx := context.Background()

	r, err := Attach(ctx, d.client(t))
	if err != nil {
		t.Fatal(err)
	}
	where, host, pid, started, version := r.AttachedTo()
	wantHost, _ := os.Hostname()
	if where != d.socket || host != wantHost || pid != os.Getpid() || version != "1.2.3-test" || started.IsZero() || time.Since(started) > time.Minute {
		t.Fatalf("attached to %s %s %d %s %s; want the socket %s, host %s, pid %d, version 1.2.3-test", where, host, pid, started, version, d.socket, wantHost, os.Getpid())
	}
	cfg := r.Config()
	if cfg.Path != d.eng.Config().Path || len(cfg.Sources) != 1 || cfg.Sources[0].Name != "app" || cfg.Sources[0].RestoreTarget != redact.DSN(targetDSN) {
		t.Fatalf("config %+v; want app with its restore target masked", cfg)
	}

	evs := r.Subscribe(ctx)
	if err := r.Pause(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, evs, "source.pause")
	if err := r.Resume(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, evs, "source.resume")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, err := r.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Sources) == 1 && st.Sources[0].State == "streaming" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not streaming again after resume: %+v", st)
		}
	}
	if recent := r.RecentEvents(); len(recent) == 0 {
		t.Fatal("no recent events")
	}

	b, err := r.BackupNow(ctx, "app")
	if err != nil || b.ArtifactKey == "" || b.ConsistentLSN == 0 {
		t.Fatalf("backup: %+v %v", b, err)
	}
	waitEvent(t, evs, "backup.finished")
	rec, err := r.SourceRecord(ctx, "app")
	if err != nil || rec.Name != "app" || rec.SystemIdentifier == "" {
		t.Fatalf("record: %+v %v", rec, err)
	}
	rep, err := r.Probe(ctx, "app")
	if err != nil || rep.ServerMajor == 0 || len(rep.Checks) == 0 {
		t.Fatalf("probe: %+v %v", rep, err)
	}

	// Changes after the newest base, which replay must bring; coverage
	// must reach them before the restore.
	source.Exec(t, d.db, "INSERT INTO t(v) SELECT 'later ' || g FROM generate_series(1, 5) g; DELETE FROM t WHERE id = 3")
	want := pgtest.QueryValue[int64](t, source, d.db, "SELECT count(*) FROM t")
	lsn := source.CurrentLSN(t)
	var plan *restore.Plan
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		plan, err = r.PlanRestore(ctx, "app", restore.Target{LSN: lsn})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plan to %s: %v", lsn, err)
		}
	}
	if plan.Base.ID != b.ID {
		t.Fatalf("plan base %d, want the newest %d", plan.Base.ID, b.ID)
	}
	cov, err := r.Coverage(ctx, "app")
	if err != nil || len(cov.Bases) != 2 || len(cov.Ranges) == 0 || len(cov.Chains) != 1 {
		t.Fatalf("coverage: %d bases, %d ranges, %d chains, %v", len(cov.Bases), len(cov.Ranges), len(cov.Chains), err)
	}
	// Segments are counted, not listed, unless asked for.
	local, err := d.eng.Coverage(ctx, "app")
	if err != nil || len(local.Segments) == 0 || len(cov.Segments) != len(local.Segments) {
		t.Fatalf("%d segments attached, %d in the engine (%v)", len(cov.Segments), len(local.Segments), err)
	}
	localPlan, err := d.eng.PlanRestore(ctx, "app", restore.Target{LSN: lsn})
	if err != nil || len(plan.Segments) != len(localPlan.Segments) || plan.Transactions != localPlan.Transactions || plan.Base.ArtifactKey != localPlan.Base.ArtifactKey {
		t.Fatalf("attached plan: %d segments, %d transactions, base %s; the engine's: %d, %d, %s (%v)", len(plan.Segments), plan.Transactions, plan.Base.ArtifactKey,
			len(localPlan.Segments), localPlan.Transactions, localPlan.Base.ArtifactKey, err)
	}
	segKey := local.Segments[0].ArtifactKey
	if _, all := raw(t, d.client(t), http.MethodGet, "/v1/sources/app/chains"); !strings.Contains(all, segKey) {
		t.Fatalf("GET chains does not list segment %s:\n%s", segKey, all)
	}
	if _, counted := raw(t, d.client(t), http.MethodGet, "/v1/sources/app/chains?segments=false"); strings.Contains(counted, segKey) ||
		!strings.Contains(counted, fmt.Sprintf(`"segment_count": %d`, len(local.Segments))) {
		t.Fatalf("GET chains?segments=false lists segments or lacks their count:\n%s", counted)
	}

	// The wizard checks the target it was offered: the masked configured
	// one works (the daemon uses its own), the source itself is refused.
	if _, err := r.CheckTarget(ctx, "app", source.DSN(d.db)); err == nil || !strings.Contains(err.Error(), "the target is the source itself") {
		t.Fatalf("check of the source itself: %v", err)
	}
	offered := cfg.Sources[0].RestoreTarget
	if info, err := r.CheckTarget(ctx, "app", offered); err != nil || info.Database != target {
		t.Fatalf("check of the configured target %s: %+v %v", offered, info, err)
	}
	// Edited to another database, the masked password is still the
	// configured one (same user, same host); on another host it is not.
	other := source.CreateDB(t)
	edited := strings.Replace(offered, "/"+target+"?", "/"+other+"?", 1)
	if info, err := r.CheckTarget(ctx, "app", edited); err != nil || info.Database != other {
		t.Fatalf("check of %s: %+v %v", edited, info, err)
	}
	elsewhere := strings.Replace(edited, "127.0.0.1:", "localhost:", 1)
	if _, err := r.CheckTarget(ctx, "app", elsewhere); err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("check of %s: %v; want the masked password refused", elsewhere, err)
	}

	var phases []string
	sum, err := r.Restore(ctx, "app", plan, restore.Options{TargetDSN: offered, NoOwner: true, Progress: func(p restore.Progress) {
		phases = append(phases, p.Phase)
	}})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if len(phases) == 0 {
		t.Fatal("no progress reached the client")
	}
	if got := pgtest.QueryValue[int64](t, source, target, "SELECT count(*) FROM t"); got != want || sum.Transactions == 0 {
		t.Fatalf("restored %d rows (%d transactions), the source held %d", got, sum.Transactions, want)
	}
	waitEvent(t, evs, "restore.finished")

	// Register a second source with the form's calls.
	source.Exec(t, other, "CREATE TABLE n(id int PRIMARY KEY)")
	block := config.SourceBlock{Name: "notes", DSN: source.DSN(other), Schedule: "off"}
	rep, err = r.ProbeSource(ctx, block)
	if err != nil || rep.Failed() || rep.Plan.Slot == "" {
		t.Fatalf("probe of the form: %+v %v", rep, err)
	}
	if _, err := r.ProbeSource(ctx, config.SourceBlock{Name: "Bad Name", DSN: "x"}); err == nil {
		t.Fatal("a form with an invalid name probed")
	}
	if err := r.AddSource(ctx, block); err != nil {
		t.Fatal(err)
	}
	if got := r.Config(); len(got.Sources) != 2 || got.Sources[1].Name != "notes" {
		t.Fatalf("config after AddSource: %+v", got.Sources)
	}
	if err := r.AddSource(ctx, block); err == nil || !strings.Contains(err.Error(), "notes") {
		t.Fatalf("a second notes: %v", err)
	}
	if err := r.Reload(ctx, nil); err != nil {
		t.Fatal(err)
	}

	// No answer and no log line carries a password.
	c := d.client(t)
	for _, path := range []string{"/v1/config", "/v1/engine", "/v1/events", "/v1/sources", "/v1/sources/app/record", "/v1/sources/app/chains", "/metrics"} {
		if _, body := raw(t, c, http.MethodGet, path); strings.Contains(body, drillPassword) {
			t.Errorf("GET %s carries the password:\n%s", path, body)
		}
	}
	if strings.Contains(log.String(), drillPassword) {
		t.Errorf("the log carries the password")
	}
	if !strings.Contains(log.String(), "restore") {
		t.Errorf("the log has no restore lines: is it the engine's log?\n%s", log.String())
	}
}

func waitEvent(t *testing.T, evs <-chan engine.EventRecord, kind string) engine.EventRecord {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				t.Fatalf("the event stream ended before %s", kind)
			}
			if ev.Kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event", kind)
		}
	}
}

// A restore started over the API runs in the daemon: the client that
// started it may go away (an SSH connection dropped) and it still
// finishes, recorded as the source's last restore.
func TestRestoreOutlivesItsClient(t *testing.T) {
	d := running(t, Options{})
	waitStreaming(t, d.eng)
	source.Exec(t, d.db, "INSERT INTO t(v) VALUES ('a'), ('b')")
	target := source.CreateDB(t)
	c := d.client(t)
	lsn := source.CurrentLSN(t)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, body := post(t, c, "/v1/sources/app/plan", fmt.Sprintf(`{"lsn": %q}`, lsn))
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("coverage never reached %s: %d %s", lsn, code, body)
		}
	}

	for _, tc := range []struct {
		body string
		code int
		want string
	}{
		{`{"target": {}, "target_dsn": "x"}`, 400, `needs \"time\", \"lsn\" or \"latest\"`},
		{`{"target": {"latest": true}}`, 400, `needs \"target_dsn\"`},
		{`{"target": {"latest": true}, "target_dsn": "x", "password": "y"}`, 400, `unknown field`},
		{`{"target": {"lsn": "0/1"}, "target_dsn": "x"}`, 422, ``},
	} {
		code, body := post(t, c, "/v1/sources/app/restore", tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("POST restore %s: %d %s; want %d with %s", tc.body, code, body, tc.code, tc.want)
		}
	}
	if code, body := post(t, c, "/v1/restores/99/cancel", ""); code != 404 {
		t.Errorf("cancel of no restore: %d %s", code, body)
	}

	ctx, hangUp := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/sources/app/restore",
		strings.NewReader(fmt.Sprintf(`{"target": {"latest": true}, "target_dsn": %q}`, source.DSN(target))))
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("restore answered %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	line, err := bufio.NewReader(resp.Body).ReadBytes('\n')
	var first RestoreUpdate
	if err != nil || json.Unmarshal(line, &first) != nil || first.ID == 0 {
		t.Fatalf("first line %q %v: want the restore's id", line, err)
	}
	hangUp()
	resp.Body.Close()

	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ss := sourceStatus(t, d.eng)
		if ss.LastRestore != nil && ss.LastRestore.FinishedAt != nil {
			if ss.LastRestore.Status != "ok" {
				t.Fatalf("the restore whose client went away ended %s: %s", ss.LastRestore.Status, ss.LastRestore.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restore never finished after its client went away: %+v", ss.LastRestore)
		}
	}
	if got := pgtest.QueryValue[int64](t, source, target, "SELECT count(*) FROM t"); got != 2 {
		t.Fatalf("restored %d rows, want 2", got)
	}
}

// The event stream is server-sent events: a live event arrives as one
// data line of JSON.
func TestEventStreamIsServerSentEvents(t *testing.T) {
	d := running(t, Options{})
	c := d.client(t)
	resp, err := c.open(context.Background(), http.MethodGet, "/v1/events/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	got := make(chan engine.EventRecord, 1)
	go readSSE(resp.Body, func(data []byte) bool {
		var ev engine.EventRecord
		if err := json.Unmarshal(data, &ev); err != nil {
			t.Errorf("data %q: %v", data, err)
			return false
		}
		if ev.Kind == "source.pause" {
			got <- ev
			return false
		}
		return true
	})
	waitStreaming(t, d.eng)
	if err := c.Do(context.Background(), http.MethodPost, "/v1/sources/app/pause", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev.Source != "app" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the pause event never came down the stream")
	}
}

func post(t *testing.T, c *Client, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// Stopping a restore from an attached wizard (its context ends)
// interrupts it in the daemon: the restore is held on a lock of the
// target's catalog, so it cannot finish first.
func TestRemoteRestoreStopsWhenAsked(t *testing.T) {
	d := running(t, Options{})
	waitStreaming(t, d.eng)
	target := source.CreateDB(t)
	ctx := context.Background()
	r, err := Attach(ctx, d.client(t))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := r.PlanRestore(ctx, "app", restore.Target{Latest: true})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, source.DSN(target))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE pg_catalog.pg_class IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	evs := r.Subscribe(ctx)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := r.Restore(rctx, "app", plan, restore.Options{TargetDSN: source.DSN(target)})
		done <- err
	}()
	waitEvent(t, evs, "restore.started")
	// Running: recorded as a job, held on the lock.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if lr := sourceStatus(t, d.eng).LastRestore; lr != nil && lr.FinishedAt == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restore was never recorded as running: %+v", sourceStatus(t, d.eng).LastRestore)
		}
	}
	stop()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "interrupted") {
			t.Fatalf("stopped restore: %v; want interrupted", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the restore did not stop")
	}
	waitEvent(t, evs, "restore.failed")
	if ss := sourceStatus(t, d.eng); ss.LastRestore == nil || ss.LastRestore.Status == "ok" {
		t.Fatalf("last restore %+v; want it recorded as failed", ss.LastRestore)
	}
}

// Masking works on the strings of an answer, never on its JSON: a
// secret made of digits leaves numbers whole.
func TestMaskedLeavesJSONWhole(t *testing.T) {
	redact.Register("90210")
	b, err := masked(struct {
		PID     int64
		LSN     uint64
		Latest  bool
		Message string
		DSN     string
		Attrs   map[string]string
	}{1902104, 1<<62 + 90210, true, "password 90210 refused", "postgres://u:pw-secret@h/db", map[string]string{"k": "90210"}}, "  ")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		PID     int64
		LSN     uint64
		Latest  bool
		Message string
		DSN     string
		Attrs   map[string]string
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%v:\n%s", err, b)
	}
	if !bytes.HasPrefix(b, []byte("{\n  \"PID\": 1902104,\n  \"LSN\"")) {
		t.Fatalf("keys out of order or not indented:\n%s", b)
	}
	if got.PID != 1902104 || got.LSN != 1<<62+90210 || !got.Latest || got.Message != "password xxxxx refused" ||
		got.DSN != "postgres://u:xxxxx@h/db" || got.Attrs["k"] != "xxxxx" {
		t.Fatalf("masked: %+v\n%s", got, b)
	}
}

// An attached TUI whose engine goes away says so in one line (the
// dashboard's), naming the pid and the socket, without the HTTP request.
func TestRemoteEngineSaysWhenTheEngineIsGone(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "btfu.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	r := &RemoteEngine{c: c, info: Info{PID: 4242}, cfg: &config.Config{}, cfgAt: time.Now()}
	_, err = r.Status(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "btfu (pid 4242) does not answer on "+sock+": ") || strings.Contains(err.Error(), "http://") {
		t.Fatalf("status of a gone engine: %v", err)
	}
}
