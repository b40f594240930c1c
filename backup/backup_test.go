package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/internal/s3test"
	"github.com/btfu/btfu/pgbin"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/local"
	"github.com/btfu/btfu/store/artifact/s3"
	"github.com/btfu/btfu/store/sqlite"
)

var (
	source, target *pgtest.Cluster
	s3srv          *s3test.Server
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		srv, err := s3test.Start()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer srv.Stop()
		s3srv = srv
		return pgtest.Main(m, &source, &target)
	}())
}

const publication = "btfu_pub"

// fixture is a source database registered in a fresh metadata store.
type fixture struct {
	db       string
	slot     string
	src      *config.Source
	meta     store.Store
	sourceID int64
	arts     artifact.Store
	logs     *syncBuffer
}

// newFixture creates a database holding schemaSQL and, unless schemaSQL
// says otherwise, the publication; its slots are dropped at the end.
func newFixture(t *testing.T, arts artifact.Store, schemaSQL string) *fixture {
	t.Helper()
	db := source.CreateDB(t)
	t.Cleanup(func() { // before the database is dropped
		conn, err := pgx.Connect(context.Background(), source.DSN("postgres"))
		if err == nil {
			defer conn.Close(context.Background())
			_, _ = conn.Exec(context.Background(), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, db)
		}
	})
	source.Exec(t, db, schemaSQL)
	if arts == nil {
		arts = localStore(t)
	}
	f := &fixture{db: db, slot: "btfu_" + db, arts: arts, logs: &syncBuffer{}}
	f.src = sourceFor(t, source.DSN(db), f.slot, "")
	ctx := context.Background()
	meta, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "btfu.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	s, err := meta.UpsertSource(ctx, store.Source{Name: f.src.Name, SlotName: f.slot, PublicationName: publication, State: "new"})
	if err != nil {
		t.Fatal(err)
	}
	f.meta, f.sourceID = meta, s.ID
	return f
}

// sourceFor builds a configured source the way config.toml would.
func sourceFor(t *testing.T, dsn, slot, passwordFile string) *config.Source {
	t.Helper()
	toml := fmt.Sprintf("[[source]]\nname = \"app\"\ndsn = %q\nslot = %q\npublication = %q\n", dsn, slot, publication)
	if passwordFile != "" {
		toml += fmt.Sprintf("password_file = %q\n", passwordFile)
	}
	cfg, err := config.Parse("test.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	return &cfg.Sources[0]
}

func localStore(t *testing.T) artifact.Store {
	s, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func s3Store(t *testing.T) artifact.Store {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := s3.New(ctx, s3.Config{Bucket: s3srv.CreateBucket(t), Prefix: "btfu", Endpoint: s3srv.Endpoint(), PathStyle: true,
		Region: s3test.Region, AccessKeyID: s3srv.AccessKey(), SecretAccessKey: s3srv.SecretKey()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fixture) take(ctx context.Context, main bool, chainID int64) (store.BaseBackup, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return Take(ctx, Request{Source: f.src, SourceID: f.sourceID, Meta: f.meta, Artifacts: f.arts,
		Log: slog.New(slog.NewTextHandler(f.logs, nil)), Main: main, ChainID: chainID})
}

func (f *fixture) mustTake(t *testing.T, main bool, chainID int64) store.BaseBackup {
	t.Helper()
	b, err := f.take(context.Background(), main, chainID)
	if err != nil {
		t.Fatalf("Take: %v\nlogs:\n%s", err, f.logs)
	}
	return b
}

// slots lists the replication slots of the fixture's database.
func (f *fixture) slots(t *testing.T) []string {
	t.Helper()
	return pgtest.QueryValue[[]string](t, source, "postgres",
		`SELECT COALESCE(array_agg(slot_name::text ORDER BY slot_name), '{}') FROM pg_replication_slots WHERE database = $1`, f.db)
}

func (f *fixture) keys(t *testing.T, prefix string) []string {
	t.Helper()
	infos, err := f.arts.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, i := range infos {
		keys = append(keys, i.Key)
	}
	return keys
}

// sha256Of reads the artifact and returns its SHA-256 and contents.
func sha256Of(t *testing.T, arts artifact.Store, key string) (string, []byte) {
	t.Helper()
	r, err := arts.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), b
}

// restore runs pg_restore of the artifact into a fresh target database
// and returns its name.
func restore(t *testing.T, arts artifact.Store, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prog, err := pgbin.Find(ctx, "pg_restore", target.Major)
	if err != nil {
		t.Fatal(err)
	}
	db := target.CreateDB(t)
	r, err := arts.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.CommandContext(ctx, prog.Path, "--no-owner", "--no-privileges", "--exit-on-error", "--dbname="+target.DSN(db))
	cmd.Stdin = r
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v\n%s", err, out)
	}
	return db
}

func tableDigest(t *testing.T, c *pgtest.Cluster, db, table string) string {
	t.Helper()
	return pgtest.QueryValue[string](t, c, db, fmt.Sprintf(`SELECT count(*) || ':' || md5(COALESCE(string_agg(t::text, '|' ORDER BY t::text), '')) FROM %s t`, table))
}

// waitFor polls the source until query returns true.
func waitFor(t *testing.T, db, what, query string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !pgtest.QueryValue[bool](t, source, db, query, args...) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitForPgDumpBlocked waits until a pg_dump session waits for a lock.
func waitForPgDumpBlocked(t *testing.T, db string) {
	t.Helper()
	waitFor(t, "postgres", "pg_dump waits for a lock", `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
		WHERE datname = $1 AND application_name = 'pg_dump' AND wait_event_type = 'Lock')`, db)
}

// lockOnFirstDump makes the first pg_dump wait: just before it starts
// (the slot exists by then), a transaction takes an ACCESS EXCLUSIVE lock
// on table that lasts until release is called (or the test ends). The
// lock cannot be taken earlier: it assigns a transaction ID, and slot
// creation waits for every transaction that has one. The hook first runs
// sqlBefore, when not empty, in a transaction of its own.
func lockOnFirstDump(t *testing.T, db, table, sqlBefore string) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn := source.Connect(t, db)
	var mu sync.Mutex
	var tx pgx.Tx
	cmdHook = func(*exec.Cmd) {
		mu.Lock()
		defer mu.Unlock()
		if tx != nil {
			return
		}
		var err error
		if sqlBefore != "" {
			_, err = conn.Exec(ctx, sqlBefore)
		}
		if err != nil {
			t.Errorf("%s: %v", sqlBefore, err)
		}
		if tx, err = conn.Begin(ctx); err == nil {
			_, err = tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE")
		}
		if err != nil {
			t.Errorf("lock %s: %v", table, err)
		}
	}
	release = func() {
		mu.Lock()
		defer mu.Unlock()
		cmdHook = nil
		if tx != nil {
			_ = tx.Rollback(ctx)
		}
	}
	t.Cleanup(release)
	return release
}

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

const shopSchema = `
	CREATE TABLE customers(id bigserial PRIMARY KEY, name text NOT NULL);
	CREATE TABLE orders(id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, customer bigint REFERENCES customers, total numeric(10,2), note text);
	CREATE SEQUENCE invoice_no START 1000;
	CREATE SCHEMA billing;
	CREATE SEQUENCE billing."Odd Seq";
	INSERT INTO customers(name) SELECT 'c' || g FROM generate_series(1, 50) g;
	INSERT INTO orders(customer, total, note) SELECT 1 + g % 50, g * 1.5, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, 200) g;
	SELECT nextval('invoice_no'), nextval('invoice_no');
	ALTER SEQUENCE billing."Odd Seq" RESTART WITH 77;
	CREATE PUBLICATION ` + publication + ` FOR ALL TABLES;`

var keyRE = regexp.MustCompile(`^app/(base|schema)/\d{8}T\d{6}Z-[0-9A-F]{16}\.(dump|sql)$`)

func TestMainBaseBackup(t *testing.T) {
	for _, kind := range []string{"local", "s3"} {
		t.Run(kind, func(t *testing.T) {
			arts := localStore(t)
			if kind == "s3" {
				arts = s3Store(t)
			}
			f := newFixture(t, arts, shopSchema)
			ctx := context.Background()
			b := f.mustTake(t, true, 0)

			// The base backup record.
			dumpProg, err := pgbin.Find(ctx, "pg_dump", source.Major)
			if err != nil {
				t.Fatal(err)
			}
			if b.Status != store.BackupComplete || b.ID == 0 || b.ChainID == 0 || b.ConsistentLSN == 0 || b.SnapshotName == "" ||
				b.SizeBytes == 0 || b.PgDumpVersion != dumpProg.Version || !strings.HasPrefix(b.ServerVersion, source.Version) ||
				b.SnapshotTime.IsZero() || b.FinishedAt.Before(b.StartedAt) || b.Error != "" {
				t.Errorf("base backup %+v", b)
			}
			if !keyRE.MatchString(b.ArtifactKey) || !strings.HasSuffix(b.ArtifactKey, fmt.Sprintf("-%016X.dump", uint64(b.ConsistentLSN))) ||
				!strings.Contains(b.ArtifactKey, b.SnapshotTime.UTC().Format("/20060102T150405Z-")) {
				t.Errorf("artifact key %s", b.ArtifactKey)
			}
			sum, content := sha256Of(t, f.arts, b.ArtifactKey)
			if sum != b.SHA256 || int64(len(content)) != b.SizeBytes || !bytes.HasPrefix(content, []byte("PGDMP")) {
				t.Errorf("stored dump: sha %s size %d, recorded %s %d", sum, len(content), b.SHA256, b.SizeBytes)
			}
			bases, err := f.meta.ListBaseBackups(ctx, f.sourceID)
			if err != nil {
				t.Fatal(err)
			}
			if len(bases) != 1 || !bases[0].SnapshotTime.Equal(b.SnapshotTime) || bases[0].Status != store.BackupComplete ||
				bases[0].SHA256 != b.SHA256 || bases[0].PgDumpVersion != b.PgDumpVersion || bases[0].ServerVersion != b.ServerVersion {
				t.Errorf("recorded base backups %+v, want %+v", bases, b)
			}

			// The chain starts at the consistent point.
			chains, err := f.meta.ListChains(ctx, f.sourceID)
			if err != nil {
				t.Fatal(err)
			}
			want := store.Chain{ID: b.ChainID, SourceID: f.sourceID, SlotName: f.slot, StartLSN: b.ConsistentLSN,
				StartedAt: b.SnapshotTime, CursorLSN: b.ConsistentLSN, CursorTime: b.SnapshotTime}
			if len(chains) != 1 || !reflect.DeepEqual(chains[0], want) {
				t.Errorf("chains %+v, want %+v", chains, want)
			}

			// The slot: permanent, confirmed up to C.
			var flushed, plugin string
			var temporary bool
			row := source.Connect(t, f.db).QueryRow(ctx, `SELECT confirmed_flush_lsn::text, plugin, temporary FROM pg_replication_slots WHERE slot_name = $1`, f.slot)
			if err := row.Scan(&flushed, &plugin, &temporary); err != nil {
				t.Fatalf("slot %s: %v", f.slot, err)
			}
			if flushed != b.ConsistentLSN.String() || plugin != "pgoutput" || temporary {
				t.Errorf("slot confirmed_flush %s plugin %s temporary %v; consistent LSN %s", flushed, plugin, temporary, b.ConsistentLSN)
			}

			// Sequences, exact even when is_called is false.
			seqs, err := f.meta.ListSequenceSnapshots(ctx, f.sourceID)
			if err != nil {
				t.Fatal(err)
			}
			wantSeqs := []store.SequenceValue{
				{Schema: "billing", Name: "Odd Seq", LastValue: 77, IsCalled: false},
				{Schema: "public", Name: "customers_id_seq", LastValue: 50, IsCalled: true},
				{Schema: "public", Name: "invoice_no", LastValue: 1001, IsCalled: true},
				{Schema: "public", Name: "orders_id_seq", LastValue: 200, IsCalled: true},
			}
			if len(seqs) != 1 || seqs[0].LSN != b.ConsistentLSN || !seqs[0].TakenAt.Equal(b.SnapshotTime) || !reflect.DeepEqual(seqs[0].Values, wantSeqs) {
				t.Errorf("sequence snapshots %+v, want values %+v at %s", seqs, wantSeqs, b.ConsistentLSN)
			}

			// The schema snapshot.
			schemas, err := f.meta.ListSchemaSnapshots(ctx, f.sourceID)
			if err != nil {
				t.Fatal(err)
			}
			if len(schemas) != 1 {
				t.Fatalf("schema snapshots %+v", schemas)
			}
			s := schemas[0]
			ssum, sql := sha256Of(t, f.arts, s.ArtifactKey)
			if !keyRE.MatchString(s.ArtifactKey) || s.LSN != b.ConsistentLSN || !s.TakenAt.Equal(b.SnapshotTime) || s.SHA256 != ssum ||
				s.SizeBytes != int64(len(sql)) || !bytes.Contains(sql, []byte("CREATE TABLE public.orders")) || bytes.Contains(sql, []byte("COPY ")) {
				t.Errorf("schema snapshot %+v (sha %s):\n%.500s", s, ssum, sql)
			}
			if keys := f.keys(t, "app/"); !reflect.DeepEqual(keys, []string{b.ArtifactKey, s.ArtifactKey}) {
				t.Errorf("artifacts %q", keys)
			}

			// pg_restore reproduces the tables.
			restored := restore(t, f.arts, b.ArtifactKey)
			for _, table := range []string{"customers", "orders"} {
				if got, want := tableDigest(t, target, restored, table), tableDigest(t, source, f.db, table); got != want {
					t.Errorf("%s restored as %s, source has %s", table, got, want)
				}
			}
		})
	}
}

// TestSnapshotAlignment checks DESIGN 1.3 on both sides of C: what
// committed before the slot was created is in the dump and not in the
// stream; what committed after (before pg_dump started, or while it ran
// although its transaction began before the backup) is in the stream
// with commit LSN >= C and not in the dump.
func TestSnapshotAlignment(t *testing.T) {
	f := newFixture(t, nil, `CREATE TABLE events(id int PRIMARY KEY, what text);
		CREATE TABLE gate(id int);
		CREATE PUBLICATION `+publication+` FOR ALL TABLES;
		INSERT INTO events VALUES (1, 'committed before');`)
	ctx := context.Background()

	// Written before the backup starts and committed while the slot is
	// being created: creation waits for it, so it lands before C.
	early, err := source.Connect(t, f.db).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := early.Exec(ctx, "INSERT INTO events VALUES (2, 'committed during slot creation')"); err != nil {
		t.Fatal(err)
	}
	// Begun before the backup, written and committed while pg_dump runs.
	late, err := source.Connect(t, f.db).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	// Committed after the slot was created, before pg_dump started (and
	// took a snapshot of its own, were it not given one).
	release := lockOnFirstDump(t, f.db, "gate", "INSERT INTO events VALUES (4, 'committed between slot and pg_dump')")

	type result struct {
		b   store.BaseBackup
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := f.take(ctx, true, 0)
		done <- result{b, err}
	}()
	waitFor(t, "postgres", "slot creation waits for the open transaction", `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
		WHERE datname = $1 AND backend_type = 'walsender' AND wait_event = 'transactionid')`, f.db)
	if err := early.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitForPgDumpBlocked(t, f.db)
	if _, err := late.Exec(ctx, "INSERT INTO events VALUES (3, 'committed during pg_dump')"); err != nil {
		t.Fatal(err)
	}
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	release()
	r := <-done
	if r.err != nil {
		t.Fatalf("Take: %v\n%s", r.err, f.logs)
	}

	restored := restore(t, f.arts, r.b.ArtifactKey)
	if got := pgtest.QueryValue[string](t, target, restored, `SELECT string_agg(id::text, ',' ORDER BY id) FROM events`); got != "1,2" {
		t.Errorf("dump holds events %s, want 1,2", got)
	}

	// The stream: exactly the later transactions, committed at or after C.
	rows, err := source.Connect(t, f.db).Query(ctx, `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
		'proto_version', '1', 'publication_names', $2)`, f.slot, publication)
	if err != nil {
		t.Fatal(err)
	}
	var commits []pglogrepl.LSN
	var inserted []string
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			t.Fatal(err)
		}
		msg, err := pglogrepl.Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pglogrepl.CommitMessage:
			commits = append(commits, m.CommitLSN)
		case *pglogrepl.InsertMessage:
			inserted = append(inserted, string(m.Tuple.Columns[0].Data))
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(commits) != 2 || commits[0] < r.b.ConsistentLSN || !slices.Equal(inserted, []string{"4", "3"}) {
		t.Errorf("stream after C=%s: commits at %v, inserted ids %v; want two commits at or after C inserting 4 then 3", r.b.ConsistentLSN, commits, inserted)
	}
}

// A TRUNCATE committed after C but before pg_dump locks the table is not
// MVCC-safe: pg_dump would read the truncated table in the old snapshot
// (empty) while the stream replays from C, so the UPDATE committed between
// C and the TRUNCATE would find no row. Take notices the new file and
// starts over with a new slot; the dump it keeps holds the table as of
// its own C.
func TestRewriteBeforeDumpStartsOver(t *testing.T) {
	f := newFixture(t, nil, `CREATE TABLE events(id int PRIMARY KEY, what text);
		CREATE TABLE other(id int);
		CREATE PUBLICATION `+publication+` FOR ALL TABLES;
		INSERT INTO events VALUES (1, 'before'), (2, 'before');`)
	ctx := context.Background()
	conn := source.Connect(t, f.db)
	var after pglogrepl.LSN
	calls := 0
	snapshotHook = func() {
		calls++
		if calls > 1 {
			return
		}
		for _, q := range []string{"UPDATE events SET what = 'after C' WHERE id = 1",
			"BEGIN; TRUNCATE events; INSERT INTO events VALUES (3, 'after the truncate'); COMMIT"} {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
		var s string
		if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
			t.Error(err)
		}
		after, _ = pglogrepl.ParseLSN(s)
	}
	defer func() { snapshotHook = nil }()

	b := f.mustTake(t, true, 0)
	if calls != 2 {
		t.Errorf("the snapshot was imported %d times, want 2 (a rewrite, then a clean try)", calls)
	}
	if !strings.Contains(f.logs.String(), "events was truncated or rewritten") || !strings.Contains(f.logs.String(), "starting over (attempt 2 of 3)") {
		t.Errorf("logs do not explain the second attempt:\n%s", f.logs)
	}
	// The dump must hold events as of its C: after the hook's changes when
	// C is after them, before them otherwise.
	want := "1,2"
	if b.ConsistentLSN >= after {
		want = "3"
	}
	restored := restore(t, f.arts, b.ArtifactKey)
	if got := pgtest.QueryValue[string](t, target, restored, `SELECT COALESCE(string_agg(id::text, ',' ORDER BY id), '') FROM events`); got != want {
		t.Errorf("dump at C=%s (the rewrite ended at %s) holds events %q, want %q", b.ConsistentLSN, after, got, want)
	}
	if got := f.slots(t); !slices.Equal(got, []string{f.slot}) {
		t.Errorf("slots %v, want only %s", got, f.slot)
	}
	bases, err := f.meta.ListBaseBackups(ctx, f.sourceID)
	if err != nil {
		t.Fatal(err)
	}
	var failed, complete int
	for _, x := range bases {
		switch x.Status {
		case store.BackupFailed:
			failed++
		case store.BackupComplete:
			complete++
		}
	}
	if failed != 1 || complete != 1 {
		t.Errorf("%d failed and %d complete base backups recorded, want 1 and 1", failed, complete)
	}
}

// A rewrite that waited for pg_dump's lock and ran once pg_dump was done
// is no reason to start over: the dump holds the table as of C.
func TestRewriteQueuedBehindPgDumpIsNoAlarm(t *testing.T) {
	f := newFixture(t, nil, `CREATE TABLE events(id int PRIMARY KEY, what text);
		CREATE TABLE gate(id int);
		CREATE PUBLICATION `+publication+` FOR ALL TABLES;
		INSERT INTO events SELECT g, 'before' FROM generate_series(1, 300000) g;`)
	// Enough rows that pg_dump is still copying (and holding its locks)
	// when the rewrite check runs at its first "dumping contents" line; a
	// dump of a few rows could end and release the locks first, and the
	// queued TRUNCATE then looks like a rewrite before the lock.
	ctx := context.Background()
	calls := 0
	snapshotHook = func() { calls++ }
	defer func() { snapshotHook = nil }()
	// pg_dump locks tables in creation order: it holds events while it
	// waits for gate.
	release := lockOnFirstDump(t, f.db, "gate", "")
	done := make(chan error, 1)
	go func() {
		_, err := f.take(ctx, true, 0)
		done <- err
	}()
	waitForPgDumpBlocked(t, f.db)
	truncated := make(chan error, 1)
	go func() {
		_, err := source.Connect(t, f.db).Exec(ctx, "TRUNCATE events")
		truncated <- err
	}()
	waitFor(t, "postgres", "TRUNCATE waits behind pg_dump", `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
		WHERE datname = $1 AND query LIKE 'TRUNCATE events%' AND wait_event_type = 'Lock')`, f.db)
	release()
	if err := <-done; err != nil {
		t.Fatalf("Take: %v\n%s", err, f.logs)
	}
	if err := <-truncated; err != nil {
		t.Fatal(err)
	}
	if calls != 1 || strings.Contains(f.logs.String(), "starting over") {
		t.Errorf("the snapshot was imported %d times, want 1:\n%s", calls, f.logs)
	}
	bases, err := f.meta.ListBaseBackups(ctx, f.sourceID)
	if err != nil {
		t.Fatal(err)
	}
	if len(bases) != 1 || bases[0].Status != store.BackupComplete {
		t.Fatalf("base backups %+v", bases)
	}
	restored := restore(t, f.arts, bases[0].ArtifactKey)
	if got := pgtest.QueryValue[int64](t, target, restored, `SELECT count(*) FROM events`); got != 300000 {
		t.Errorf("dump holds %d events, want the 300000 from before the TRUNCATE", got)
	}
}

func TestTemporarySlotBaseBackup(t *testing.T) {
	f := newFixture(t, nil, shopSchema)
	ctx := context.Background()
	main := f.mustTake(t, true, 0)
	source.Exec(t, f.db, "INSERT INTO customers(name) VALUES ('later')")

	b := f.mustTake(t, false, main.ChainID)
	if b.Status != store.BackupComplete || b.ChainID != main.ChainID || b.ConsistentLSN <= main.ConsistentLSN || b.ArtifactKey == main.ArtifactKey {
		t.Errorf("second base backup %+v after %+v", b, main)
	}
	if slots := f.slots(t); !slices.Equal(slots, []string{f.slot}) {
		t.Errorf("slots after Take: %v, want only the main slot", slots)
	}
	chains, err := f.meta.ListChains(ctx, f.sourceID)
	if err != nil {
		t.Fatal(err)
	}
	if len(chains) != 1 || chains[0].StartLSN != main.ConsistentLSN || !chains[0].EndedAt.IsZero() || chains[0].CursorLSN != main.ConsistentLSN {
		t.Errorf("chains %+v", chains)
	}
	// Misuse changes nothing: a second main slot, an unknown chain.
	if _, err := f.take(ctx, true, 0); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second main base backup: %v", err)
	}
	if _, err := f.take(ctx, false, main.ChainID+1); err == nil || !strings.Contains(err.Error(), "is not a chain of source") {
		t.Errorf("base backup on an unknown chain: %v", err)
	}
	bases, err := f.meta.ListBaseBackups(ctx, f.sourceID)
	if err != nil {
		t.Fatal(err)
	}
	chains, err = f.meta.ListChains(ctx, f.sourceID)
	if err != nil {
		t.Fatal(err)
	}
	if slots := f.slots(t); len(bases) != 2 || len(chains) != 1 || !slices.Equal(slots, []string{f.slot}) {
		t.Errorf("after refused base backups: slots %v, base backups %+v, chains %+v", slots, bases, chains)
	}

	restored := restore(t, f.arts, b.ArtifactKey)
	if got := pgtest.QueryValue[int64](t, target, restored, "SELECT count(*) FROM customers"); got != 51 {
		t.Errorf("second base backup holds %d customers, want 51", got)
	}
	seqs, err := f.meta.ListSequenceSnapshots(ctx, f.sourceID)
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 2 || seqs[1].LSN != b.ConsistentLSN || seqs[1].Values[1].LastValue != 51 {
		t.Errorf("sequence snapshots %+v", seqs)
	}

	// The schema is unchanged: no new schema snapshot, although pg_dump's
	// \restrict key differs between runs.
	schemas, err := f.meta.ListSchemaSnapshots(ctx, f.sourceID)
	if err != nil {
		t.Fatal(err)
	}
	if len(schemas) != 1 || len(f.keys(t, "app/schema/")) != 1 {
		t.Errorf("schema snapshots after an unchanged schema: %+v, artifacts %q", schemas, f.keys(t, "app/schema/"))
	}
	source.Exec(t, f.db, "ALTER TABLE customers ADD COLUMN email text")
	b3 := f.mustTake(t, false, main.ChainID)
	schemas, err = f.meta.ListSchemaSnapshots(ctx, f.sourceID)
	if err != nil {
		t.Fatal(err)
	}
	if len(schemas) != 2 || schemas[1].LSN != b3.ConsistentLSN {
		t.Fatalf("schema snapshots after ALTER TABLE: %+v", schemas)
	}
	if _, sql := sha256Of(t, f.arts, schemas[1].ArtifactKey); !bytes.Contains(sql, []byte("email text")) {
		t.Errorf("new schema snapshot lacks the column:\n%s", sql)
	}
	if len(f.keys(t, "app/base/")) != 3 || len(f.keys(t, "app/schema/")) != 2 {
		t.Errorf("artifacts %q", f.keys(t, "app/"))
	}
}

// assertFailed checks what a failed main base backup leaves: a failed
// record, no artifact, no slot, an ended chain.
func assertFailed(t *testing.T, f *fixture, b store.BaseBackup, err error, wantErr string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("Take error %v, want one containing %q", err, wantErr)
	}
	ctx := context.Background()
	bases, lerr := f.meta.ListBaseBackups(ctx, f.sourceID)
	if lerr != nil {
		t.Fatal(lerr)
	}
	if len(bases) != 1 || bases[0].Status != store.BackupFailed || !strings.Contains(bases[0].Error, wantErr) ||
		bases[0].ArtifactKey != "" || bases[0].FinishedAt.IsZero() || b.ID != bases[0].ID || b.Status != store.BackupFailed {
		t.Errorf("base backups %+v (returned %+v)", bases, b)
	}
	if keys := f.keys(t, ""); len(keys) != 0 {
		t.Errorf("artifacts left: %q", keys)
	}
	if slots := f.slots(t); len(slots) != 0 {
		t.Errorf("slots left: %v", slots)
	}
	chains, lerr := f.meta.ListChains(ctx, f.sourceID)
	if lerr != nil {
		t.Fatal(lerr)
	}
	if len(chains) != 1 || chains[0].EndedAt.IsZero() || chains[0].EndReason == "" {
		t.Errorf("chains %+v, want one ended", chains)
	}
}

func TestCancelKillsPgDump(t *testing.T) {
	f := newFixture(t, nil, shopSchema)
	release := lockOnFirstDump(t, f.db, "orders", "")
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		b   store.BaseBackup
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := f.take(ctx, true, 0)
		done <- result{b, err}
	}()
	waitForPgDumpBlocked(t, f.db)
	cancel()
	r := <-done
	assertFailed(t, f, r.b, r.err, "pg_dump interrupted")
	t.Logf("interrupted as expected: %v", r.err)
	if !errors.Is(r.err, context.Canceled) {
		t.Errorf("error %v does not wrap context.Canceled", r.err)
	}
}

func TestMissingPublicationIsRefusedBeforeAnything(t *testing.T) {
	f := newFixture(t, nil, "CREATE TABLE t(id int PRIMARY KEY)")
	b, err := f.take(context.Background(), true, 0)
	want := "publication " + publication + " does not exist; register the source first"
	if err == nil || !strings.Contains(err.Error(), want) || b.ID != 0 {
		t.Fatalf("Take = %+v, %v; want an error containing %q", b, err, want)
	}
	t.Logf("refused as expected: %v", err)
	ctx := context.Background()
	bases, _ := f.meta.ListBaseBackups(ctx, f.sourceID)
	chains, _ := f.meta.ListChains(ctx, f.sourceID)
	if len(bases)+len(chains)+len(f.slots(t))+len(f.keys(t, "")) != 0 {
		t.Errorf("created something: bases %+v chains %+v slots %v artifacts %q", bases, chains, f.slots(t), f.keys(t, ""))
	}
}

// TestPasswordRole backs up as a role with a password (SCRAM), which
// pg_dump gets through PGPASSWORD only: never in its arguments, errors or
// logs. Without SELECT on a table, pg_dump fails and everything is undone;
// once granted, the same source backs up.
func TestPasswordRole(t *testing.T) {
	f := newFixture(t, nil, shopSchema+"CREATE TABLE secret(id int PRIMARY KEY); INSERT INTO secret VALUES (42);")
	role := "dumper_" + f.db[len(f.db)-6:]
	password := `p@ss:w/rd 'q' \ %x+ü`
	source.Exec(t, f.db, fmt.Sprintf(`CREATE ROLE %s LOGIN REPLICATION PASSWORD '%s';
		GRANT USAGE ON SCHEMA billing TO %[1]s;
		GRANT SELECT ON ALL TABLES IN SCHEMA public TO %[1]s;
		GRANT SELECT ON ALL SEQUENCES IN SCHEMA public, billing TO %[1]s;
		REVOKE SELECT ON secret FROM %[1]s;`, role, strings.ReplaceAll(password, "'", "''")))
	t.Cleanup(func() {
		source.Exec(t, f.db, "DROP OWNED BY "+role)
		source.Exec(t, "postgres", "DROP ROLE "+role)
	})

	var cmds []*exec.Cmd
	cmdHook = func(c *exec.Cmd) { cmds = append(cmds, c) }
	defer func() { cmdHook = nil }()
	checkCmds := func(t *testing.T) {
		t.Helper()
		if len(cmds) == 0 {
			t.Fatal("no pg_dump ran")
		}
		for _, c := range cmds {
			args := strings.Join(c.Args, " ")
			if strings.Contains(args, password) || strings.Contains(args, url.QueryEscape(password)) || strings.Contains(args, "p%40ss") {
				t.Errorf("password in pg_dump arguments: %s", args)
			}
			if !slices.Contains(c.Args, "--no-password") || !slices.Contains(c.Env, "PGPASSWORD="+password) {
				t.Errorf("pg_dump %q env has no PGPASSWORD", c.Args)
			}
		}
		cmds = nil
	}

	// A keyword/value DSN and the password from password_file.
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.src = sourceFor(t, fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=disable", source.Host, source.Port, f.db, role), f.slot, pwFile)
	b, err := f.take(context.Background(), true, 0)
	assertFailed(t, f, b, err, "permission denied for table secret")
	t.Logf("refused as expected: %v", err)
	checkCmds(t)
	for where, text := range map[string]string{"error": err.Error(), "record": b.Error, "logs": f.logs.String()} {
		if strings.Contains(text, password) {
			t.Errorf("password in %s: %s", where, text)
		}
	}

	// A URL with the password in it.
	source.Exec(t, f.db, "GRANT SELECT ON secret TO "+role)
	u := url.URL{Scheme: "postgres", User: url.UserPassword(role, password), Host: fmt.Sprintf("%s:%d", source.Host, source.Port),
		Path: "/" + f.db, RawQuery: "sslmode=disable"}
	f.src = sourceFor(t, u.String(), f.slot, "")
	b = f.mustTake(t, true, 0)
	checkCmds(t)
	if b.Status != store.BackupComplete {
		t.Errorf("base backup %+v", b)
	}
	if strings.Contains(f.logs.String(), password) {
		t.Errorf("password in logs:\n%s", f.logs)
	}
	restored := restore(t, f.arts, b.ArtifactKey)
	if got := pgtest.QueryValue[int64](t, target, restored, "SELECT id FROM secret"); got != 42 {
		t.Errorf("restored secret = %d", got)
	}
}

func TestSnapshotSequences(t *testing.T) {
	f := newFixture(t, nil, shopSchema)
	ctx := context.Background()
	before := source.CurrentLSN(t)
	snap, err := SnapshotSequences(ctx, f.src, f.sourceID, f.meta)
	if err != nil {
		t.Fatal(err)
	}
	after := source.CurrentLSN(t)
	if snap.ID == 0 || snap.LSN < before || snap.LSN > after || time.Since(snap.TakenAt) > time.Minute || len(snap.Values) != 4 ||
		snap.Values[2] != (store.SequenceValue{Schema: "public", Name: "invoice_no", LastValue: 1001, IsCalled: true}) {
		t.Errorf("snapshot %+v between %s and %s", snap, before, after)
	}
	stored, err := f.meta.ListSequenceSnapshots(ctx, f.sourceID)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0].ID != snap.ID || !reflect.DeepEqual(stored[0].Values, snap.Values) {
		t.Errorf("stored %+v, want %+v", stored, snap)
	}

	// No privilege on a sequence: a clear error.
	role := "seq_" + f.db[len(f.db)-6:]
	source.Exec(t, f.db, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD 'pw-for-seq'", role))
	t.Cleanup(func() { source.Exec(t, "postgres", "DROP ROLE "+role) })
	f.src = sourceFor(t, source.DSNFor(role, "pw-for-seq", f.db), f.slot, "")
	if _, err := SnapshotSequences(ctx, f.src, f.sourceID, f.meta); err == nil || !strings.Contains(err.Error(), "permission denied for") ||
		!strings.Contains(err.Error(), "GRANT SELECT ON ALL SEQUENCES") {
		t.Errorf("error %v", err)
	}
}

// A table dropped after the snapshot and before pg_dump locks it makes
// pg_dump fail at LOCK TABLE (its table list comes from the snapshot's
// catalog); the base backup starts over with a new snapshot instead of
// failing, as happened under the regression suite's DDL.
func TestTableDroppedBeforeDumpLocksItStartsOver(t *testing.T) {
	f := newFixture(t, nil, `CREATE TABLE events(id int PRIMARY KEY, what text);
		CREATE TABLE doomed(id int PRIMARY KEY);
		CREATE PUBLICATION `+publication+` FOR ALL TABLES;
		INSERT INTO events VALUES (1, 'kept');`)
	ctx := context.Background()
	conn := source.Connect(t, f.db)
	calls := 0
	snapshotHook = func() {
		calls++
		if calls == 1 {
			if _, err := conn.Exec(ctx, "DROP TABLE doomed"); err != nil {
				t.Error(err)
			}
		}
	}
	defer func() { snapshotHook = nil }()
	b := f.mustTake(t, true, 0)
	if calls != 2 {
		t.Errorf("the snapshot was imported %d times, want 2 (pg_dump failed to lock the dropped table, then a clean try)", calls)
	}
	if !strings.Contains(f.logs.String(), `relation \"public.doomed\" does not exist`) && !strings.Contains(f.logs.String(), `relation "public.doomed" does not exist`) {
		t.Errorf("logs do not say why the first attempt failed:\n%s", f.logs)
	}
	restored := restore(t, f.arts, b.ArtifactKey)
	if got := pgtest.QueryValue[string](t, target, restored, `SELECT string_agg(what, ',') FROM events`); got != "kept" {
		t.Errorf("events restored as %q", got)
	}
}

// definitions lists what a restore must hold of the source's schema: the
// tables, the views' and functions' definitions in public.
func definitions(t *testing.T, c *pgtest.Cluster, db string) string {
	t.Helper()
	return pgtest.QueryValue[string](t, c, db, `SELECT concat_ws(E'\n',
		(SELECT string_agg(format('table %I: %s', c.relname, (SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
			FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)), E'\n' ORDER BY c.relname)
			FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'),
		(SELECT string_agg(format('view %I: %s', c.relname, pg_get_viewdef(c.oid)), E'\n' ORDER BY c.relname)
			FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v'),
		(SELECT string_agg(pg_get_functiondef(p.oid), E'\n' ORDER BY p.proname, p.oid::regprocedure::text)
			FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace))`)
}

// pg_dump deparses functions, views and other objects it does not lock
// with server functions that read the current catalog, not its snapshot:
// one dropped or replaced after the snapshot and before pg_dump read it
// came out wrong ("CREATE FUNCTION public.f() RETURNS LANGUAGE sql" under
// the regression suite, or a definition naming a table the dump lacks)
// and the base did not restore, or pg_dump failed. Take notices the changed catalog rows
// and starts over; the base it keeps restores and holds the source's
// schema at its snapshot.
func TestDefinitionChangedBeforeDumpStartsOver(t *testing.T) {
	for _, c := range []struct {
		name, schema, change, named string
	}{
		{name: "function dropped",
			schema: `CREATE FUNCTION f(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + 1'`,
			change: `DROP FUNCTION f(int)`,
			named:  "function public.f(integer) changed or was dropped after the snapshot"},
		{name: "function recreated with another signature and result",
			schema: `CREATE FUNCTION g(int) RETURNS int LANGUAGE sql AS 'SELECT $1'`,
			change: `DROP FUNCTION g(int); CREATE FUNCTION g(text, text) RETURNS text LANGUAGE sql AS 'SELECT $1 || $2'`,
			named:  "function public.g(integer) changed or was dropped after the snapshot"},
		{name: "function body replaced",
			schema: `CREATE FUNCTION h() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM events; END`,
			change: `CREATE TABLE later(id int PRIMARY KEY);
				CREATE OR REPLACE FUNCTION h() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM later; END`,
			named: "function public.h() changed or was dropped after the snapshot"},
		{name: "view dropped", // pg_dump fails: could not open relation with OID
			schema: `CREATE VIEW v AS SELECT id FROM events`,
			change: `DROP VIEW v`,
			named:  "view public.v changed or was dropped after the snapshot"},
		{name: "column renamed", // pg_dump locks events, but only after the rename
			schema: `CREATE FUNCTION k(int) RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT what FROM events WHERE id = $1; END`,
			change: `ALTER TABLE events RENAME COLUMN id TO ident`,
			named:  "column id of public.events changed or was dropped after the snapshot"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, nil, `CREATE TABLE events(id int PRIMARY KEY, what text);
				INSERT INTO events VALUES (1, 'kept');
				CREATE PUBLICATION `+publication+` FOR ALL TABLES;`+c.schema)
			ctx := context.Background()
			conn := source.Connect(t, f.db)
			calls := 0
			snapshotHook = func() {
				if calls++; calls == 1 {
					if _, err := conn.Exec(ctx, c.change); err != nil {
						t.Error(err)
					}
				}
			}
			defer func() { snapshotHook = nil }()
			b := f.mustTake(t, true, 0)
			if calls != 2 {
				t.Errorf("the snapshot was imported %d times, want 2 (a definition changed, then a clean try)", calls)
			}
			if logs := f.logs.String(); !strings.Contains(logs, c.named) || !strings.Contains(logs, "starting over (attempt 2 of 3)") {
				t.Errorf("logs do not say %q and that it starts over:\n%s", c.named, logs)
			}
			restored := restore(t, f.arts, b.ArtifactKey)
			if got, want := definitions(t, target, restored), definitions(t, source, f.db); got != want {
				t.Errorf("restored schema:\n%s\nsource at the snapshot:\n%s", got, want)
			}
			if got := pgtest.QueryValue[string](t, target, restored, `SELECT string_agg(what, ',') FROM events`); got != "kept" {
				t.Errorf("events restored as %q", got)
			}
		})
	}
}

// DDL before every pg_dump exhausts the attempts: the base backup fails
// and says why and what to do.
func TestDefinitionChangedEveryTimeGivesUp(t *testing.T) {
	f := newFixture(t, nil, `CREATE TABLE events(id int PRIMARY KEY);
		CREATE PUBLICATION `+publication+` FOR ALL TABLES;
		CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'`)
	ctx := context.Background()
	conn := source.Connect(t, f.db)
	calls := 0
	snapshotHook = func() {
		calls++
		if _, err := conn.Exec(ctx, "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT "+fmt.Sprint(calls)+"'"); err != nil {
			t.Error(err)
		}
	}
	defer func() { snapshotHook = nil }()
	_, err := f.take(ctx, true, 0)
	if err == nil || !strings.Contains(err.Error(), "function public.f() changed or was dropped after the snapshot") ||
		!strings.Contains(err.Error(), "gave up after 3 attempts") || !strings.Contains(err.Error(), "when no DDL runs") {
		t.Fatalf("Take error %v", err)
	}
	t.Logf("gave up as expected: %v", err)
	if calls != 3 {
		t.Errorf("the snapshot was imported %d times, want 3", calls)
	}
	bases, err := f.meta.ListBaseBackups(ctx, f.sourceID)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bases {
		if b.Status != store.BackupFailed {
			t.Errorf("base backup %+v", b)
		}
	}
	if keys := f.keys(t, ""); len(bases) != 3 || len(keys) != 0 || len(f.slots(t)) != 0 {
		t.Errorf("%d base backups, artifacts %q and slots %v left", len(bases), keys, f.slots(t))
	}
}

// VACUUM, ANALYZE and autovacuum update pg_class in place; REFRESH
// MATERIALIZED VIEW, VACUUM FULL of an unpublished table, GRANT and a
// new trigger give pg_class rows new versions without changing any
// definition; a view's body is read in pg_dump's snapshot, so a replaced
// view is dumped as of the snapshot; and objects created after the
// snapshot are not in the dump. None of these is a reason to start over.
func TestMaintenanceAfterSnapshotIsNoCatalogAlarm(t *testing.T) {
	f := newFixture(t, nil, `CREATE TABLE events(id int PRIMARY KEY, what text);
		CREATE TABLE scratch(id int);
		CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n FROM events;
		CREATE FUNCTION f(int) RETURNS int LANGUAGE sql AS 'SELECT $1';
		CREATE VIEW v AS SELECT f(id) FROM events;
		INSERT INTO events SELECT g, 'e' FROM generate_series(1, 1000) g;
		CREATE PUBLICATION `+publication+` FOR TABLE events;`)
	ctx := context.Background()
	conn := source.Connect(t, f.db)
	calls := 0
	snapshotHook = func() {
		if calls++; calls > 1 {
			return
		}
		for _, q := range []string{"DELETE FROM events WHERE id <= 500", "ANALYZE events", "VACUUM events", "VACUUM (FREEZE) events",
			"ANALYZE", "REFRESH MATERIALIZED VIEW totals", "VACUUM FULL scratch", "GRANT SELECT ON events TO PUBLIC",
			"CREATE FUNCTION later() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'",
			"CREATE TRIGGER later BEFORE INSERT ON scratch FOR EACH ROW EXECUTE FUNCTION later()",
			"CREATE TABLE newer(id int); CREATE OR REPLACE VIEW v AS SELECT f(id) FROM newer"} {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	}
	defer func() { snapshotHook = nil }()
	b := f.mustTake(t, true, 0)
	if logs := f.logs.String(); calls != 1 || strings.Contains(logs, "starting over") || strings.Contains(logs, "schema snapshot not recorded") {
		t.Errorf("the snapshot was imported %d times, want 1:\n%s", calls, logs)
	}
	restored := restore(t, f.arts, b.ArtifactKey)
	if got := pgtest.QueryValue[int64](t, target, restored, `SELECT count(*) FROM events`); got != 1000 {
		t.Errorf("dump holds %d events, want the 1000 of the snapshot", got)
	}
	if got := pgtest.QueryValue[string](t, target, restored, `SELECT pg_get_viewdef('v')`); !strings.Contains(got, "FROM events") {
		t.Errorf("view v restored as %q, want the snapshot's, over events", got)
	}
}

// The schema-only dump runs after the whole base and deparses at its end:
// a definition changed by then spoils only that side record, which is not
// kept; the base backup, checked when pg_dump had read its catalog, is.
func TestDefinitionChangedBeforeSchemaDumpSkipsSchemaSnapshot(t *testing.T) {
	f := newFixture(t, nil, `CREATE TABLE events(id int PRIMARY KEY);
		CREATE PUBLICATION `+publication+` FOR ALL TABLES;
		CREATE FUNCTION f(int) RETURNS int LANGUAGE sql AS 'SELECT $1'`)
	ctx := context.Background()
	conn := source.Connect(t, f.db)
	dumps := 0
	cmdHook = func(cmd *exec.Cmd) {
		if dumps++; slices.Contains(cmd.Args, "--schema-only") {
			if _, err := conn.Exec(ctx, "DROP FUNCTION f(int)"); err != nil {
				t.Error(err)
			}
		}
	}
	defer func() { cmdHook = nil }()
	b := f.mustTake(t, true, 0)
	if logs := f.logs.String(); dumps != 2 || strings.Contains(logs, "starting over") ||
		!strings.Contains(logs, "schema snapshot not recorded") || !strings.Contains(logs, "function public.f(integer) changed") {
		t.Errorf("%d pg_dump runs; logs:\n%s", dumps, logs)
	}
	schemas, err := f.meta.ListSchemaSnapshots(ctx, f.sourceID)
	if err != nil {
		t.Fatal(err)
	}
	if keys := f.keys(t, ""); len(schemas) != 0 || !slices.Equal(keys, []string{b.ArtifactKey}) {
		t.Errorf("schema snapshots %+v, artifacts %q", schemas, keys)
	}
	restored := restore(t, f.arts, b.ArtifactKey)
	if got := pgtest.QueryValue[int64](t, target, restored, `SELECT count(*) FROM pg_proc WHERE proname = 'f'`); got != 1 {
		t.Errorf("restored base holds %d functions f, want the snapshot's", got)
	}
}
