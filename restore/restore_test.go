package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/capture"
	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/internal/capturetest"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/internal/s3test"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/local"
)

var source, target *pgtest.Cluster

var s3srv *s3test.Server

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

var tables = []string{"items", "tags", "toasty"}

type mark struct {
	name string
	at   time.Time
	lsn  pglogrepl.LSN
	hash map[string]string
	seq  int64
}

func contentHash(t *testing.T, c *pgtest.Cluster, db string) map[string]string {
	out := map[string]string{}
	for _, tbl := range tables {
		out[tbl] = pgtest.QueryValue[string](t, c, db, fmt.Sprintf("SELECT coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), 'empty') FROM %s x", tbl))
	}
	return out
}

type env struct {
	db   string
	meta store.Store
	arts artifact.Store
	id   int64
	src  *config.Source
	w    *capture.Worker
	stop func()
}

func capturing(t *testing.T) *env { return capturingTo(t, nil) }

// capturingTo captures into arts (nil: a local directory).
func capturingTo(t *testing.T, arts artifact.Store) *env { return capturingWith(t, arts, "") }

// capturingWith runs setup on the source before registration, so the
// tables it creates are published and in the first base backup whatever
// DDL capture does.
func capturingWith(t *testing.T, arts artifact.Store, setup string) *env {
	t.Helper()
	return capturingConf(t, arts, setup, "")
}

// capturingConf is capturingWith with extra lines for the source's
// [[source]] table.
func capturingConf(t *testing.T, arts artifact.Store, setup, extra string) *env {
	t.Helper()
	return capturingIn(t, source.CreateDB(t), arts, setup, extra)
}

// capturingIn is capturingConf in database db of the source.
func capturingIn(t *testing.T, db string, arts artifact.Store, setup, extra string) *env {
	t.Helper()
	source.Exec(t, db, `CREATE TABLE items(id serial PRIMARY KEY, name text, qty int);
		CREATE TABLE tags(a int, b text); ALTER TABLE tags REPLICA IDENTITY FULL;
		CREATE TABLE toasty(id int PRIMARY KEY, big text, n int);
		INSERT INTO items(name, qty) VALUES ('before', 1)`)
	if setup != "" {
		source.Exec(t, db, setup)
	}
	ce := capturetest.Setup(t, source, db, "segment_max_age = \"200ms\"\n"+extra)
	if arts != nil {
		ce.Arts = arts
	}
	meta, arts, src := ce.Meta, ce.Arts, ce.Source
	rec := store.Source{ID: ce.SourceID}
	w := ce.Worker(t)
	ctx := context.Background()
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	for deadline := time.Now().Add(60 * time.Second); w.Status().State != "streaming"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not streaming")
		}
	}
	e := &env{db: db, meta: meta, arts: arts, id: rec.ID, src: src, w: w}
	e.stop = func() { cancel(); <-done }
	t.Cleanup(func() { e.stop() })
	return e
}

func (e *env) mark(t *testing.T, name string) mark {
	time.Sleep(20 * time.Millisecond)
	m := mark{name: name, hash: contentHash(t, source, e.db), seq: pgtest.QueryValue[int64](t, source, e.db, "SELECT last_value FROM items_id_seq")}
	m.at = pgtest.QueryValue[time.Time](t, source, e.db, "SELECT clock_timestamp()")
	m.lsn = source.CurrentLSN(t)
	time.Sleep(20 * time.Millisecond)
	return m
}

// waitStored waits until coverage reaches m by LSN and by time. A
// transaction after the mark (a logical message replay ignores) moves the
// stored cursor past it at once; an idle source would move it only with
// the walsender's next keepalive, seconds later.
func (e *env) waitStored(t *testing.T, m mark) {
	t.Helper()
	source.Exec(t, e.db, "SELECT pg_logical_emit_message(true, 'btfu.test.nudge', '')")
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		chains, _ := e.meta.ListChains(context.Background(), e.id)
		for _, c := range chains {
			if c.EndedAt.IsZero() && c.CursorLSN >= m.lsn && !c.CursorTime.Before(m.at) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not stored up to %s / %s", m.lsn, m.at)
		}
	}
}

func (e *env) restore(t *testing.T, tg Target) (string, Summary, error) {
	t.Helper()
	ctx := context.Background()
	plan, err := MakePlan(ctx, e.meta, e.id, tg)
	if err != nil {
		return "", Summary{}, err
	}
	db := target.CreateDB(t)
	sum, err := Run(ctx, e.meta, e.arts, e.id, plan, Options{TargetDSN: target.DSN(db)})
	return db, sum, err
}

func TestRestoreToEveryMarkByTimeAndByLSN(t *testing.T) {
	e := capturing(t)
	big := "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 300) g)"
	steps := []struct{ name, sql string }{
		{"inserts", "INSERT INTO items(name, qty) SELECT 'i' || g, g FROM generate_series(1, 50) g; INSERT INTO toasty VALUES (1, " + big + ", 0), (2, NULL, 0); INSERT INTO tags VALUES (1, 'x'), (1, 'x'), (2, NULL)"},
		{"updates and deletes", "UPDATE items SET qty = qty * 10 WHERE id % 3 = 0; DELETE FROM items WHERE id % 7 = 0; UPDATE toasty SET n = n + 1; UPDATE tags SET b = 'y' WHERE ctid = (SELECT min(ctid) FROM tags WHERE a = 1)"},
		{"duplicates and NULLs", "DELETE FROM tags WHERE ctid = (SELECT max(ctid) FROM tags WHERE a = 2); INSERT INTO items(name, qty) VALUES (NULL, NULL), ('', 0), ('null', 1)"},
		{"truncate restart identity", "TRUNCATE items RESTART IDENTITY; INSERT INTO items(name, qty) VALUES ('after truncate', 5)"},
		{"add column", "ALTER TABLE items ADD COLUMN note text; INSERT INTO items(name, qty, note) VALUES ('noted', 1, 'hello')"},
	}
	var marks []mark
	marks = append(marks, e.mark(t, "start"))
	for _, s := range steps {
		source.Exec(t, e.db, s.sql)
		marks = append(marks, e.mark(t, s.name))
	}
	e.waitStored(t, marks[len(marks)-1])
	for _, m := range marks {
		for _, tg := range []Target{{Time: m.at}, {LSN: m.lsn}} {
			t.Run(m.name+"/"+tg.String(), func(t *testing.T) {
				db, sum, err := e.restore(t, tg)
				if err != nil {
					t.Fatal(err)
				}
				got := contentHash(t, target, db)
				for _, tbl := range tables {
					if got[tbl] != m.hash[tbl] {
						t.Errorf("table %s differs from the source at %s", tbl, m.name)
					}
				}
				// The sequence never hands out a value the source had used.
				next := pgtest.QueryValue[int64](t, target, db, "SELECT nextval('items_id_seq')")
				if next <= m.seq && m.name != "truncate restart identity" && m.name != "add column" {
					t.Errorf("items_id_seq hands out %d, source had reached %d", next, m.seq)
				}
				if maxID := pgtest.QueryValue[*int64](t, target, db, "SELECT max(id)::bigint FROM items"); maxID != nil && next <= *maxID {
					t.Errorf("items_id_seq hands out %d, below the column's max %d", next, *maxID)
				}
				_ = sum
			})
		}
	}
	// Latest.
	db, _, err := e.restore(t, Target{Latest: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := contentHash(t, target, db); got["items"] != marks[len(marks)-1].hash["items"] {
		t.Error("latest restore differs from the source's last state")
	}
}

func TestCorruptOrMissingArtifactStopsBeforeTheTarget(t *testing.T) {
	e := capturing(t)
	source.Exec(t, e.db, "INSERT INTO items(name) VALUES ('a')")
	m := e.mark(t, "one")
	e.waitStored(t, m)
	segs, _ := e.meta.ListSegments(context.Background(), e.id, 0)
	if len(segs) == 0 {
		t.Fatal("no segment")
	}
	key := segs[len(segs)-1].ArtifactKey
	path := filepath.Join(e.arts.(*local.Store).Root(), key)
	data, _ := os.ReadFile(path)
	data[len(data)/2] ^= 1
	os.WriteFile(path, data, 0o600)
	db, _, err := e.restore(t, Target{Latest: true})
	if !errors.Is(err, ErrCorruptArtifact) || !strings.Contains(err.Error(), key) {
		t.Fatalf("corrupt segment: %v", err)
	}
	if n := pgtest.QueryValue[int64](t, target, db, "SELECT count(*) FROM pg_class WHERE relname = 'items'"); n != 0 {
		t.Fatal("the target was touched")
	}
	os.Remove(path)
	if _, _, err := e.restore(t, Target{Latest: true}); err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("missing segment: %v", err)
	}
}

func TestOutsideCoverageAndSourceAsTargetAreRefused(t *testing.T) {
	e := capturing(t)
	m := e.mark(t, "x")
	e.waitStored(t, m)
	_, _, err := e.restore(t, Target{Time: time.Now().Add(-24 * time.Hour)})
	if !errors.Is(err, ErrOutsideCoverage) || !strings.Contains(err.Error(), "restorable:") {
		t.Fatalf("outside coverage: %v", err)
	}
	plan, err := MakePlan(context.Background(), e.meta, e.id, Target{Latest: true})
	if err != nil {
		t.Fatal(err)
	}
	sysid := pgtest.QueryValue[string](t, source, e.db, "SELECT system_identifier::text FROM pg_control_system()")
	_, err = Run(context.Background(), e.meta, e.arts, e.id, plan, Options{TargetDSN: source.DSN(e.db), SourceSystemID: sysid, SourceDatabase: e.db})
	if err == nil || !strings.Contains(err.Error(), "never restores into the source") {
		t.Fatalf("source as target: %v", err)
	}
	// A non-empty target is refused without clean.
	_, err = Run(context.Background(), e.meta, e.arts, e.id, plan, Options{TargetDSN: source.DSN(e.db)})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("non-empty target: %v", err)
	}
}

func TestTypesIdentifiersAndSpecialTables(t *testing.T) {
	e := capturing(t)
	source.Exec(t, e.db, `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TYPE pair AS (x int, y text);
CREATE SCHEMA "Other Schema";
CREATE TABLE "Other Schema"."a_very_long_identifier_that_is_exactly_sixty_three_chars_long_x" (
  "Weird ""col""" int PRIMARY KEY, v text);
CREATE TABLE types(id int PRIMARY KEY,
  n numeric, f float8, ts timestamp, tstz timestamptz, iv interval, b bytea, arr int[], tarr text[],
  j json, jb jsonb, u uuid, ip inet, m mood, d posint, c pair, r int4range, bits bit varying(10), t text);
CREATE TABLE ident(id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text, g int GENERATED ALWAYS AS (length(v)) STORED);
CREATE TABLE parted(id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (10) TO (20);`)
	// Tables created after registration under FOR ALL TABLES are captured.
	source.Exec(t, e.db, `
INSERT INTO types VALUES
 (1, 123456789012345678901234567890.123456789012345678901234567890, 'NaN', '2026-01-02 03:04:05.123456', '2026-01-02 03:04:05.123456+05:30', '1 year 2 mons 3 days 04:05:06.789',
  '\x00ff10', '{1,NULL,3}', '{"a,b","c\"d",NULL,""}', '{"k": [1, 2.50, null]}', '{"z": 1, "a": {"b": "c"}}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '10.1.2.3/24', 'happy', 5, ROW(1, 'x y'), '[1,10)', B'1011', 'null'),
 (2, -0.000000000000000000000000000001, '-Infinity', 'infinity', '-infinity', '-1 day', '', '{}', '{}', 'null', '[]', NULL, '::1', 'sad', 1, ROW(NULL, NULL), 'empty', B'', ''),
 (3, NULL, 1e-308, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO "Other Schema"."a_very_long_identifier_that_is_exactly_sixty_three_chars_long_x" VALUES (1, 'q');
INSERT INTO ident(v) VALUES ('abc'), ('de');
INSERT INTO parted VALUES (1, 1, 'one'), (2, 15, 'two');`)
	source.Exec(t, e.db, `UPDATE types SET f = 'Infinity', jb = jb || '{"n": 2}' WHERE id = 1; UPDATE ident SET v = 'longer' WHERE id = 1;
UPDATE parted SET k = 12 WHERE id = 1; DELETE FROM types WHERE id = 3;
UPDATE "Other Schema"."a_very_long_identifier_that_is_exactly_sixty_three_chars_long_x" SET v = 'r'`)
	m := e.mark(t, "types")
	e.waitStored(t, m)
	db, _, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range []string{"types", "ident", "parted", `"Other Schema"."a_very_long_identifier_that_is_exactly_sixty_three_chars_long_x"`} {
		q := fmt.Sprintf("SELECT coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), 'empty') FROM %s x", tbl)
		if a, b := pgtest.QueryValue[string](t, source, e.db, q), pgtest.QueryValue[string](t, target, db, q); a != b {
			t.Errorf("%s differs after restore", tbl)
		}
	}
	if next := pgtest.QueryValue[int64](t, target, db, "INSERT INTO ident(v) VALUES ('n') RETURNING id"); next <= 2 {
		t.Errorf("identity hands out %d again", next)
	}
}

func TestVerifyFindsPlantedCorruption(t *testing.T) {
	e := capturing(t)
	source.Exec(t, e.db, "INSERT INTO items(name) VALUES ('a')")
	m := e.mark(t, "one")
	e.waitStored(t, m)
	ctx := context.Background()
	rep, err := Verify(ctx, e.meta, e.arts, e.id)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || rep.BaseBackups != 1 || rep.Segments == 0 || len(rep.Coverage) != 1 {
		t.Fatalf("clean store: %+v", rep)
	}
	segs, _ := e.meta.ListSegments(ctx, e.id, 0)
	key := segs[0].ArtifactKey
	path := filepath.Join(e.arts.(*local.Store).Root(), key)
	data, _ := os.ReadFile(path)
	data[len(data)/2] ^= 0x10
	os.WriteFile(path, data, 0o600)
	rep, err = Verify(ctx, e.meta, e.arts, e.id)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], key) {
		t.Fatalf("problems: %v", rep.Problems)
	}
}

// Without DDL capture (a role that may not create event triggers), column
// changes come from Relation messages as derived DDL and replay in place.
func TestDerivedDDLWithoutCapture(t *testing.T) {
	e := capturing(t)
	source.Exec(t, e.db, "DROP EVENT TRIGGER btfu_capture_ddl")
	source.Exec(t, e.db, "INSERT INTO items(name, qty) VALUES ('a', 1)")
	source.Exec(t, e.db, "ALTER TABLE items ADD COLUMN note text, ALTER COLUMN qty TYPE bigint")
	source.Exec(t, e.db, "INSERT INTO items(name, qty, note) VALUES ('b', 5000000000, 'n')")
	source.Exec(t, e.db, "ALTER TABLE items DROP COLUMN name")
	source.Exec(t, e.db, "UPDATE items SET note = 'x' WHERE qty = 1")
	m := e.mark(t, "derived")
	e.waitStored(t, m)
	db, _, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	if got := contentHash(t, target, db); got["items"] != m.hash["items"] {
		t.Fatal("items differs after replaying derived DDL")
	}
}

// A partitioned table created after registration is published partition
// by partition (the publication was planned without publish_via_partition_root),
// so a column added to it shows in each partition's next Relation message
// as derived DDL on the partition, which PostgreSQL refuses ("cannot add
// column to a partition"). Replay applies such column changes to the
// partition tree's root, where the captured DDL may already have made them.
func TestColumnChangesOfAPartitionReplayOnItsRoot(t *testing.T) {
	for _, capture := range []bool{true, false} {
		t.Run(fmt.Sprintf("captured=%v", capture), func(t *testing.T) {
			e := capturing(t)
			source.Exec(t, e.db, `CREATE TABLE parts(id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
				CREATE TABLE parts_a PARTITION OF parts FOR VALUES FROM (0) TO (100);
				CREATE TABLE parts_b PARTITION OF parts FOR VALUES FROM (100) TO (200);
				INSERT INTO parts VALUES (1, 'a'), (150, 'b')`)
			if !capture {
				// The table is in the base backup; later shape changes
				// come only from Relation messages.
				m := e.mark(t, "created")
				e.waitStored(t, m)
				if _, err := e.w.BackupNow(context.Background()); err != nil {
					t.Fatal(err)
				}
				source.Exec(t, e.db, "DROP EVENT TRIGGER btfu_capture_ddl")
			}
			source.Exec(t, e.db, "ALTER TABLE parts ADD COLUMN d numeric(12,2), ALTER COLUMN v TYPE varchar(20)")
			source.Exec(t, e.db, "INSERT INTO parts VALUES (2, 'c', 1.5), (151, 'd', 2.25); UPDATE parts SET d = 9 WHERE id = 150")
			source.Exec(t, e.db, "ALTER TABLE parts DROP COLUMN v")
			source.Exec(t, e.db, "INSERT INTO parts VALUES (3, 4); UPDATE parts SET d = 7 WHERE id = 1")
			m := e.mark(t, "after")
			want := pgtest.QueryValue[string](t, source, e.db, "SELECT string_agg(p::text, '|' ORDER BY id) FROM parts p")
			e.waitStored(t, m)
			db, _, err := e.restore(t, Target{LSN: m.lsn})
			if err != nil {
				t.Fatal(err)
			}
			if got := pgtest.QueryValue[string](t, target, db, "SELECT string_agg(p::text, '|' ORDER BY id) FROM parts p"); got != want {
				t.Fatalf("parts restored as %s, source held %s", got, want)
			}
		})
	}
}
