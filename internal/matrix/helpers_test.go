package matrix

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/pgbin"
	"github.com/btfu/btfu/segment"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
)

const (
	envMatrix    = "BTFU_MATRIX"
	envResults   = "BTFU_MATRIX_RESULTS"
	envClientBin = "BTFU_MATRIX_CLIENT_BIN"
	envLDPath    = "BTFU_TEST_PG_LD_LIBRARY_PATH"
	// decodingWorkMem makes the workload's large transaction stream (14+).
	decodingWorkMem = "64kB"
)

var (
	// server is the matrix server (the major under test); client is a
	// server of the installed client's major, the source for restores into
	// server.
	server, client *pgtest.Cluster
)

func TestMain(m *testing.M) {
	if os.Getenv(envMatrix) == "" {
		os.Exit(m.Run()) // every test skips
	}
	os.Exit(runMatrix(m))
}

func runMatrix(m *testing.M) int {
	settings := map[string]string{"logical_decoding_work_mem": decodingWorkMem}
	var err error
	server, err = pgtest.Start(pgtest.Options{Settings: settings})
	if err != nil {
		fmt.Fprintln(os.Stderr, "matrix server:", err)
		return 1
	}
	defer server.Stop()
	bin, err := clientBinDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "matrix:", err)
		return 1
	}
	// The installed server must not load the matrix server's libraries.
	ld, hadLD := os.LookupEnv(envLDPath)
	os.Unsetenv(envLDPath)
	client, err = pgtest.Start(pgtest.Options{BinDir: bin, Settings: settings})
	if hadLD {
		os.Setenv(envLDPath, ld)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "matrix client-major server:", err)
		return 1
	}
	defer client.Stop()
	fmt.Printf("matrix: server PostgreSQL %s (%s), restore source PostgreSQL %s (%s)\n", server.Version, server.BinDir, client.Version, client.BinDir)
	return m.Run()
}

// clientBinDir is the server install of the newest pg_dump's major:
// $BTFU_MATRIX_CLIENT_BIN, else found by pgbin.
func clientBinDir() (string, error) {
	if d := os.Getenv(envClientBin); d != "" {
		return d, nil
	}
	ctx := context.Background()
	dump, err := pgbin.Find(ctx, "pg_dump", 0)
	if err != nil {
		return "", err
	}
	for _, p := range pgbin.All(ctx, "initdb") {
		if p.Major == dump.Major {
			path := p.Path
			if real, err := filepath.EvalSymlinks(path); err == nil {
				path = real
			}
			return filepath.Dir(path), nil
		}
	}
	return "", fmt.Errorf("no initdb of PostgreSQL %d (the major of %s); install its server or set %s", dump.Major, dump, envClientBin)
}

// requireMatrix skips t unless the matrix runs, and records the test's
// outcome under key when it ends: FAIL if it failed, else what *result
// says by then.
func requireMatrix(t *testing.T, key string, result *string) {
	t.Helper()
	if os.Getenv(envMatrix) == "" {
		t.Skip("the version matrix runs with " + envMatrix + "=1: make test-matrix")
	}
	t.Cleanup(func() {
		v := *result
		if t.Failed() || v == "" {
			v = "FAIL"
		}
		record(key, v)
	})
}

var recordMu sync.Mutex

// record appends key=value to $BTFU_MATRIX_RESULTS.
func record(key, value string) {
	path := os.Getenv(envResults)
	if path == "" {
		return
	}
	recordMu.Lock()
	defer recordMu.Unlock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s=%s\n", key, strings.ReplaceAll(value, "\n", " "))
}

// logf logs progress; the "info: " prefix tells it from a failure in the
// script's summary.
func logf(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("info: "+format, args...)
}

func note(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf("PostgreSQL %d: ", server.Major) + fmt.Sprintf(format, args...)
	logf(t, "%s", msg)
	record("note", msg)
}

// canDump reports whether an installed pg_dump can dump c.
func canDump(c *pgtest.Cluster) (pgbin.Program, bool) {
	p, err := pgbin.Find(context.Background(), "pg_dump", c.Major)
	return p, err == nil
}

func installedDump(t *testing.T) pgbin.Program {
	t.Helper()
	p, err := pgbin.Find(context.Background(), "pg_dump", 0)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The workload. Before registration: schema and seed rows (they reach the
// restore through the base backup).
const schema = `
CREATE TABLE accounts(id bigserial PRIMARY KEY, owner text NOT NULL, balance numeric(12,2), note text);
CREATE TABLE events(at timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00', kind text, payload jsonb);
ALTER TABLE events REPLICA IDENTITY FULL;
CREATE TABLE bulk(id int PRIMARY KEY, filler text);
INSERT INTO accounts(owner, balance) SELECT 'o' || g, g FROM generate_series(1, 50) g;
INSERT INTO events(kind, payload) SELECT 'seed', jsonb_build_object('n', g) FROM generate_series(1, 10) g;
`

// workload runs, one transaction per entry, inserts, updates and deletes
// on a table with and one without a primary key, a column added, and a
// transaction of about 1.5 MB (well over logical_decoding_work_mem).
var workload = []string{
	`UPDATE accounts SET balance = balance * 2 WHERE id % 2 = 0`,
	`DELETE FROM accounts WHERE id > 45`,
	`INSERT INTO accounts(owner, balance, note) VALUES ('late', 1, repeat('ü', 3000))`,
	`INSERT INTO events(at, kind, payload) SELECT '2024-01-02 00:00:00+00'::timestamptz + g * interval '1 minute', 'w', jsonb_build_object('n', g) FROM generate_series(11, 30) g`,
	`UPDATE events SET kind = 'seen' WHERE (payload->>'n')::int % 3 = 0`,
	`DELETE FROM events WHERE (payload->>'n')::int % 5 = 0`,
	`ALTER TABLE accounts ADD COLUMN tier int`,
	`UPDATE accounts SET tier = 1 WHERE id < 5`,
	`INSERT INTO bulk SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 5000) g;
	 UPDATE bulk SET filler = 'y' WHERE id <= 1000;
	 DELETE FROM bulk WHERE id > 4900`,
}

// wantChanges is what the workload must leave in the segments, per table
// and record type.
var wantChanges = map[string]map[string]int{
	"accounts": {segment.TypeInsert: 1, segment.TypeUpdate: 25 + 4, segment.TypeDelete: 5},
	"events":   {segment.TypeInsert: 20, segment.TypeUpdate: 10, segment.TypeDelete: 6},
	"bulk":     {segment.TypeInsert: 5000, segment.TypeUpdate: 1000, segment.TypeDelete: 100},
}

// afterMark changes data after a restore point, so a restore to it must
// stop there.
var afterMark = []string{
	`UPDATE accounts SET balance = -1, tier = 9`,
	`DELETE FROM events WHERE kind = 'seen'`,
	`INSERT INTO bulk SELECT g, 'after' FROM generate_series(6001, 6010) g`,
}

func runAll(t *testing.T, c *pgtest.Cluster, db string, stmts []string) {
	t.Helper()
	for _, s := range stmts {
		c.Exec(t, db, s)
	}
}

// tableHashes hashes every user table of db (schema.table -> md5).
func tableHashes(t *testing.T, c *pgtest.Cluster, db string) map[string]string {
	t.Helper()
	names := pgtest.QueryValue[[]string](t, c, db, `SELECT coalesce(array_agg(format('%I.%I', schemaname, tablename) ORDER BY 1), '{}') FROM pg_tables
		WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'btfu')`)
	out := map[string]string{}
	for _, n := range names {
		out[n] = pgtest.QueryValue[string](t, c, db, fmt.Sprintf("SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), 'empty') FROM %s x", n))
	}
	return out
}

func compareHashes(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: nothing to compare", what)
	}
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var names []string
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if got[k] != want[k] {
			t.Errorf("%s: table %s restored as %q, source held %q", what, k, got[k], want[k])
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 90s waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testLogger discards btfu's logs unless $BTFU_MATRIX_LOG is set (then
// they go to stderr at debug level).
func testLogger() *slog.Logger {
	if os.Getenv("BTFU_MATRIX_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// A running engine with one source.
type engineRun struct {
	e      *engine.Engine
	events <-chan engine.EventRecord
	name   string
	db     string
	slot   string
	c      *pgtest.Cluster
	stop   func()
}

// sourceConfig is a configuration whose one source, name, is database db
// of c (no schedule, segments closed every 200ms).
func sourceConfig(t *testing.T, c *pgtest.Cluster, db, name string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse(filepath.Join(dir, "config.toml"), []byte(fmt.Sprintf(`
[metadata]
path = %q
[storage]
path = %q
[engine]
spool_dir = %q
[[source]]
name = %q
dsn = %q
slot = "s_%s"
schedule = "off"
segment_max_age = "200ms"
`, filepath.Join(dir, "btfu.db"), filepath.Join(dir, "data"), t.TempDir(), name, c.DSN(db), db)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startEngine opens an engine on sourceConfig and runs it.
func startEngine(t *testing.T, c *pgtest.Cluster, db, name string) *engineRun {
	t.Helper()
	cfg := sourceConfig(t, c, db, name)
	slot := cfg.Sources[0].Slot
	e, err := engine.Open(context.Background(), cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE '%s%%' AND NOT active", slot))
	})
	t.Cleanup(func() { e.Close() })
	r := &engineRun{e: e, name: name, db: db, slot: slot, c: c}
	evCtx, cancelEv := context.WithCancel(context.Background())
	t.Cleanup(cancelEv)
	r.events = e.Subscribe(evCtx)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stopped := false
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("engine: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("engine did not stop in 30s")
		}
	}
	t.Cleanup(r.stop)
	return r
}

// waitEvent reads events until one of kind arrives.
func (r *engineRun) waitEvent(t *testing.T, kind string) engine.EventRecord {
	t.Helper()
	timeout := time.After(90 * time.Second)
	for {
		select {
		case ev := <-r.events:
			if ev.Kind == kind {
				return ev
			}
			if ev.Kind == "source.register_failed" || ev.Kind == "capture.failed" || ev.Kind == "backup.failed" {
				logf(t, "event %s: %s", ev.Kind, ev.Message)
			}
		case <-timeout:
			t.Fatalf("no %s event in 90s", kind)
		}
	}
}

func (r *engineRun) waitState(t *testing.T, state string) {
	t.Helper()
	current, failing := r.state(t), stuck(t)
	waitFor(t, fmt.Sprintf("source %s in state %s", r.name, state), func() bool {
		st, lastErr := current()
		if st == state {
			return true
		}
		failing(st, lastErr)
		return false
	})
}

func (r *engineRun) sourceID(t *testing.T) int64 {
	t.Helper()
	src, err := r.e.SourceRecord(context.Background(), r.name)
	if err != nil {
		t.Fatal(err)
	}
	return src.ID
}

// captureState reports a capture's state and last error.
type captureState func() (state, lastError string)

func (r *engineRun) state(t *testing.T) captureState {
	return func() (string, string) {
		st, err := r.e.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st.Sources[0].State, st.Sources[0].LastError
	}
}

// stuck returns a check that fails the test once a capture has been
// reconnecting or in error for 5s (a slow retry loop otherwise hides the
// reason behind a timeout).
func stuck(t *testing.T) func(state, lastError string) {
	var since time.Time
	return func(state, lastError string) {
		t.Helper()
		if state != "reconnecting" && state != "error" {
			since = time.Time{}
			return
		}
		if since.IsZero() {
			since = time.Now()
		} else if time.Since(since) > 5*time.Second {
			t.Fatalf("capture %s for %s: %s", state, time.Since(since).Round(time.Second), lastError)
		}
	}
}

// waitCovered waits until the source's open chain is stored up to lsn. A
// capture that keeps failing (reconnecting or in error for 5s: nothing in
// the matrix should interrupt it) fails at once with its error.
func waitCovered(t *testing.T, meta store.Store, sourceID int64, lsn pglogrepl.LSN, state captureState) {
	t.Helper()
	var last string
	failing := stuck(t)
	waitFor(t, "coverage up to "+lsn.String(), func() bool {
		failing(state())
		segs, err := meta.ListSegments(context.Background(), sourceID, 0)
		if err != nil {
			t.Fatal(err)
		}
		chains, err := meta.ListChains(context.Background(), sourceID)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chains {
			last = fmt.Sprintf("chain %d cursor %s, %d segments", ch.ID, ch.CursorLSN, len(segs))
			if ch.EndedAt.IsZero() && ch.CursorLSN >= lsn && len(segs) > 0 {
				return true
			}
		}
		return false
	})
	logf(t, "covered: %s", last)
}

// decoded is what the stored segments hold.
type decoded struct {
	changes map[string]map[string]int // table -> record type -> count
	columns map[string][]string       // table -> columns of its last relation record
	txs     int
	maxTx   int // changes in the largest transaction
}

// decodeSegments reads every stored segment of the source.
func decodeSegments(t *testing.T, meta store.Store, arts artifact.Store, sourceID int64) decoded {
	t.Helper()
	ctx := context.Background()
	segs, err := meta.ListSegments(ctx, sourceID, 0)
	if err != nil {
		t.Fatal(err)
	}
	d := decoded{changes: map[string]map[string]int{}, columns: map[string][]string{}}
	for _, s := range segs {
		rc, err := arts.Get(ctx, s.ArtifactKey)
		if err != nil {
			t.Fatal(err)
		}
		r, err := segment.NewReader(rc)
		if err != nil {
			rc.Close()
			t.Fatalf("segment %s: %v", s.ArtifactKey, err)
		}
		inTx := 0
		for {
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("segment %s: %v", s.ArtifactKey, err)
			}
			switch rec.T {
			case segment.TypeRelation:
				var cols []string
				for _, c := range rec.Relation.Columns {
					cols = append(cols, c.Name)
				}
				d.columns[rec.Relation.Name] = cols
			case segment.TypeBegin:
				inTx = 0
			case segment.TypeCommit:
				d.txs++
				d.maxTx = max(d.maxTx, inTx)
			case segment.TypeInsert, segment.TypeUpdate, segment.TypeDelete:
				inTx++
				rel := r.Relation(rec.RelOID)
				if rel == nil {
					t.Fatalf("segment %s: change to relation %d without its relation record", s.ArtifactKey, rec.RelOID)
				}
				if d.changes[rel.Name] == nil {
					d.changes[rel.Name] = map[string]int{}
				}
				d.changes[rel.Name][rec.T]++
			}
		}
		r.Close()
		rc.Close()
	}
	return d
}

// checkDecoded compares the segments with the workload.
func checkDecoded(t *testing.T, d decoded) {
	t.Helper()
	for table, want := range wantChanges {
		for typ, n := range want {
			if got := d.changes[table][typ]; got != n {
				t.Errorf("segments hold %d %q changes of %s, the workload made %d", got, typ, table, n)
			}
		}
	}
	if cols := strings.Join(d.columns["accounts"], ","); !strings.HasSuffix(cols, ",tier") {
		t.Errorf("accounts as last described in the segments: columns %s, want the added column tier last", cols)
	}
	if d.maxTx < 6100 {
		t.Errorf("largest stored transaction has %d changes, want the bulk transaction's 6100", d.maxTx)
	}
	logf(t, "segments: %d transactions, largest %d changes", d.txs, d.maxTx)
}

// checkStreamed asserts the server streamed the large transaction to the
// slot (protocol 2, PostgreSQL 14+). Slot statistics may be flushed only
// when the walsender ends, so call it after the capture stopped.
func checkStreamed(t *testing.T, c *pgtest.Cluster, slot string) {
	t.Helper()
	if c.Major < 14 {
		logf(t, "PostgreSQL %d: no streaming of in-progress transactions (protocol 1); the large transaction is decoded at commit", c.Major)
		return
	}
	var got int64
	waitFor(t, "pg_stat_replication_slots.stream_txns > 0 for "+slot, func() bool {
		got = pgtest.QueryValue[int64](t, c, "postgres", "SELECT coalesce((SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = $1), 0)", slot)
		return got > 0
	})
	logf(t, "slot %s: %d streamed transaction(s)", slot, got)
}
