package stream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/klauspost/compress/zstd"

	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/segment"
)

var source *pgtest.Cluster

func TestMain(m *testing.M) {
	// A small logical_decoding_work_mem makes the server stream large
	// transactions before they commit (protocol 2).
	c, err := pgtest.Start(pgtest.Options{Settings: map[string]string{"logical_decoding_work_mem": "64kB"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	source = c
	code := m.Run()
	c.Stop()
	os.Exit(code)
}

type harness struct {
	t      *testing.T
	conn   *pgconn.PgConn
	db     string
	slot   string
	events chan Event
	rcv    *Receiver
	cancel context.CancelFunc
	done   chan error
	start  LSN
}

// startStream creates a publication and a slot in db and runs a receiver.
func startStream(t *testing.T, db string, cfg Config) *harness {
	t.Helper()
	return startStreamAfter(t, db, cfg, nil)
}

// startStreamAfter is startStream that runs before after creating the
// slot and before receiving: what it writes is decoded later.
func startStreamAfter(t *testing.T, db string, cfg Config, before func()) *harness {
	t.Helper()
	slot := "s_" + db
	source.Exec(t, db, "CREATE PUBLICATION pub FOR ALL TABLES")
	ctx := context.Background()
	rc, err := pgconn.Connect(ctx, source.DSN(db)+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, rc, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"})
	if err != nil {
		t.Fatal(err)
	}
	start, _ := pglogrepl.ParseLSN(res.ConsistentPoint)
	side, err := pgx.Connect(ctx, source.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { side.Close(context.Background()) })
	cfg.Slot, cfg.Publication = slot, "pub"
	if cfg.ProtoVersion == 0 {
		cfg.ProtoVersion, cfg.Streaming = 2, true
	}
	if cfg.StartLSN == 0 {
		cfg.StartLSN = start
	}
	cfg.SpoolDir = t.TempDir()
	cfg.TypeName = func(ctx context.Context, oid uint32, typmod int32) (string, error) {
		var n string
		err := side.QueryRow(ctx, "SELECT format_type($1, $2)", oid, typmod).Scan(&n)
		return n, err
	}
	if before != nil {
		before()
	}
	h := &harness{t: t, conn: rc, db: db, slot: slot, events: make(chan Event, 16), rcv: New(rc, cfg), done: make(chan error, 1), start: start}
	rctx, cancel := context.WithCancel(ctx)
	h.cancel = cancel
	go func() { h.done <- h.rcv.Run(rctx, h.events) }()
	t.Cleanup(func() {
		h.stop()
		// The walsender lets go of the slot shortly after its connection closes.
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if !pgtest.QueryValue[bool](t, source, "postgres", fmt.Sprintf("SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '%s' AND active)", slot)) {
				break
			}
		}
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot('%s') FROM pg_replication_slots WHERE slot_name = '%s'", slot, slot))
	})
	return h
}

func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel = nil
		h.conn.Close(context.Background())
	}
}

// nextTx waits for the next transaction, skipping idle marks.
func (h *harness) nextTx() *Tx {
	h.t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case ev := <-h.events:
			if ev.Tx != nil {
				return ev.Tx
			}
		case err := <-h.done:
			h.t.Fatalf("receiver stopped: %v", err)
		case <-timeout:
			h.t.Fatal("no transaction within 60s")
		}
	}
}

// records writes tx into a segment and reads its change records back.
func records(t *testing.T, tx *Tx) []*segment.Record {
	t.Helper()
	defer tx.Release()
	var buf bytes.Buffer
	w, err := segment.NewWriter(&buf, segment.Header{Source: "t", PrevEndLSN: 0}, zstd.SpeedFastest)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.WriteTo(w); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := segment.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []*segment.Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		switch rec.T {
		case segment.TypeBegin, segment.TypeCommit, segment.TypeRelation:
		default:
			out = append(out, rec)
		}
	}
}

func texts(vs []segment.Value) string {
	var parts []string
	for _, v := range vs {
		switch v.Kind {
		case segment.Null:
			parts = append(parts, "NULL")
		case segment.Unchanged:
			parts = append(parts, "UNCHANGED")
		default:
			parts = append(parts, v.Text)
		}
	}
	return strings.Join(parts, ",")
}

func summary(recs []*segment.Record) string {
	var parts []string
	for _, r := range recs {
		switch r.T {
		case segment.TypeInsert:
			parts = append(parts, "i("+texts(r.New)+")")
		case segment.TypeUpdate:
			parts = append(parts, "u("+texts(r.New)+")")
		case segment.TypeDelete:
			parts = append(parts, "d("+texts(r.Old)+")")
		case segment.TypeTruncate:
			parts = append(parts, fmt.Sprintf("trunc(%d,%v,%v)", len(r.RelOIDs), r.Cascade, r.RestartIdentity))
		case segment.TypeMessage:
			parts = append(parts, "msg("+r.Prefix+")")
		}
	}
	return strings.Join(parts, " ")
}

func TestCommittedTransactionsAsCommitted(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE t(id int PRIMARY KEY, v text, big text);
		CREATE TABLE nokey(a int, b text); ALTER TABLE nokey REPLICA IDENTITY FULL`)
	h := startStream(t, db, Config{})
	// An incompressible value is stored out of line (TOAST) and comes
	// back as "unchanged" when an UPDATE leaves it alone.
	source.Exec(t, db, `INSERT INTO t VALUES (1, 'a', NULL), (2, '', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g))`)
	source.Exec(t, db, `UPDATE t SET v = 'b' WHERE id = 2`)
	source.Exec(t, db, `BEGIN; INSERT INTO t VALUES (3, 'gone'); ROLLBACK`)
	source.Exec(t, db, `BEGIN; INSERT INTO t VALUES (4, 'kept'); SAVEPOINT s; INSERT INTO t VALUES (5, 'undone'); ROLLBACK TO s; INSERT INTO t VALUES (6, 'null'); COMMIT`)
	source.Exec(t, db, `DELETE FROM t WHERE id = 1`)
	source.Exec(t, db, `INSERT INTO nokey VALUES (1, 'x'), (1, 'x'); UPDATE nokey SET b = 'y' WHERE ctid = (SELECT min(ctid) FROM nokey)`)
	source.Exec(t, db, `BEGIN; SELECT pg_logical_emit_message(true, 'btfu.ddl', '{"tag":"x"}'); TRUNCATE t, nokey RESTART IDENTITY CASCADE; COMMIT`)

	want := []string{
		"i(1,a,NULL) i(2,,xxxxx)",
		"u(2,b,UNCHANGED)",
		"i(4,kept,NULL) i(6,null,NULL)",
		"d(1,NULL,NULL)",
		"i(1,x) i(1,x) u(1,y)",
		"msg(btfu.ddl) trunc(2,true,true)",
	}
	var prevEnd LSN
	for i, w := range want {
		tx := h.nextTx()
		if tx.Info.CommitLSN < prevEnd || tx.Info.EndLSN <= tx.Info.CommitLSN || tx.Info.CommitTime.IsZero() || tx.Info.CommitLSN < h.start {
			t.Fatalf("tx %d info out of order: %+v after %s", i, tx.Info, prevEnd)
		}
		prevEnd = tx.Info.EndLSN
		recs := records(t, tx)
		got := summary(recs)
		got = strings.ReplaceAll(got, pgtest.QueryValue[string](t, source, db, "SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g"), "xxxxx")
		if got != w {
			t.Fatalf("tx %d: got %s, want %s", i, got, w)
		}
		for j, r := range recs {
			if r.Ordinal != j+1 {
				t.Fatalf("tx %d: ordinal %d at %d", i, r.Ordinal, j)
			}
		}
		if i == 4 && (recs[2].OldKind != "O" || texts(recs[2].Old) != "1,x") {
			t.Fatalf("REPLICA IDENTITY FULL update carries the old row: %+v", recs[2])
		}
	}
}

func TestLargeStreamedTransactionsSpoolAndHonourSubtransactionAborts(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE big(id int PRIMARY KEY, pad text)`)
	h := startStream(t, db, Config{SpoolThreshold: 64 << 10})
	// Interleaved: a large transaction streamed in pieces while a small
	// one commits in the middle; inside it, a rolled-back savepoint.
	ctx := context.Background()
	c1, err := pgx.Connect(ctx, source.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close(ctx)
	mustExec := func(c *pgx.Conn, sql string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	mustExec(c1, "BEGIN")
	mustExec(c1, "INSERT INTO big SELECT g, repeat('p', 100) FROM generate_series(1, 20000) g")
	mustExec(c1, "SAVEPOINT s1")
	mustExec(c1, "INSERT INTO big SELECT g, 'aborted' FROM generate_series(20001, 30000) g")
	mustExec(c1, "ROLLBACK TO s1")
	source.Exec(t, db, "INSERT INTO big VALUES (0, 'small')")
	mustExec(c1, "INSERT INTO big SELECT g, 'after' FROM generate_series(30001, 35000) g")
	mustExec(c1, "COMMIT")

	small := records(t, h.nextTx())
	if summary(small) != "i(0,small)" {
		t.Fatalf("first committed: %s", summary(small))
	}
	tx := h.nextTx()
	if tx.spool == nil {
		t.Fatal("a 25000-row transaction should have been spooled")
	}
	if tx.Info.Changes != 25000 {
		t.Fatalf("changes = %d, want 25000 (aborted subtransaction excluded)", tx.Info.Changes)
	}
	recs := records(t, tx)
	if len(recs) != 25000 {
		t.Fatalf("records = %d", len(recs))
	}
	for _, r := range recs {
		if r.New[1].Text == "aborted" {
			t.Fatal("a change of the rolled-back savepoint was kept")
		}
	}
	if recs[0].New[0].Text != "1" || recs[19999].New[0].Text != "20000" || recs[20000].New[0].Text != "30001" {
		t.Fatal("order not kept")
	}
	// A streamed transaction that aborts leaves nothing.
	mustExec(c1, "BEGIN")
	mustExec(c1, "INSERT INTO big SELECT g, repeat('z', 100) FROM generate_series(100001, 120000) g")
	mustExec(c1, "ROLLBACK")
	source.Exec(t, db, "INSERT INTO big VALUES (-1, 'marker')")
	if got := summary(records(t, h.nextTx())); got != "i(-1,marker)" {
		t.Fatalf("after an aborted streamed transaction: %s", got)
	}
	entries, _ := os.ReadDir(h.rcv.cfg.SpoolDir)
	if len(entries) != 0 {
		t.Fatalf("spool files left: %v", entries)
	}
}

func TestProtocol1WithoutStreaming(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE t(id int PRIMARY KEY)`)
	h := startStream(t, db, Config{ProtoVersion: 1, SpoolThreshold: 1 << 10})
	source.Exec(t, db, `INSERT INTO t SELECT generate_series(1, 5000)`)
	tx := h.nextTx()
	if tx.Info.Changes != 5000 || tx.spool == nil {
		t.Fatalf("changes %d spooled %v", tx.Info.Changes, tx.spool != nil)
	}
	tx.Release()
}

func TestDuplicatesBelowTheCursorAreSkipped(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE t(id int PRIMARY KEY)`)
	h := startStream(t, db, Config{})
	source.Exec(t, db, `INSERT INTO t VALUES (1)`)
	first := h.nextTx()
	first.Release()
	source.Exec(t, db, `INSERT INTO t VALUES (2)`)
	second := h.nextTx()
	second.Release()
	h.stop()
	// The old walsender lets go of the slot shortly after its connection
	// closes.
	for deadline := time.Now().Add(30 * time.Second); pgtest.QueryValue[bool](t, source, db, fmt.Sprintf("SELECT active FROM pg_replication_slots WHERE slot_name = '%s'", h.slot)); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("slot still active 30s after its connection closed")
		}
	}
	// Nothing was acknowledged, so the server sends both again; with the
	// cursor at the first's end, only the second is new.
	rc, err := pgconn.Connect(context.Background(), source.DSN(db)+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close(context.Background())
	r := New(rc, Config{Slot: h.slot, Publication: "pub", ProtoVersion: 2, Streaming: true, StartLSN: first.Info.EndLSN, SpoolDir: t.TempDir()})
	events := make(chan Event, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, events) }()
	stopped := false
	defer func() {
		cancel()
		if !stopped {
			<-done
		}
	}()
	for {
		select {
		case ev := <-events:
			if ev.Tx == nil {
				continue
			}
			if ev.Tx.Info.CommitLSN != second.Info.CommitLSN {
				t.Fatalf("got transaction at %s, want only the second at %s", ev.Tx.Info.CommitLSN, second.Info.CommitLSN)
			}
			return
		case err := <-done:
			stopped = true
			t.Fatalf("receiver stopped: %v", err)
		case <-time.After(60 * time.Second):
			t.Fatal("the second transaction was not sent again")
		}
	}
}

func TestIdleSourceSendsIdleMarksAndAcksMoveTheSlot(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE t(id int PRIMARY KEY)`)
	h := startStream(t, db, Config{StatusInterval: 100 * time.Millisecond})
	source.Exec(t, db, `INSERT INTO t VALUES (1)`)
	tx := h.nextTx()
	tx.Release()
	h.rcv.Ack(tx.Info.EndLSN)
	deadline := time.After(30 * time.Second)
	var idle Event
	for !idle.Idle {
		select {
		case ev := <-h.events:
			if ev.Idle && ev.WALEnd >= tx.Info.EndLSN {
				idle = ev
			}
		case <-deadline:
			t.Fatal("no idle mark on a quiet source")
		}
	}
	if time.Since(idle.ServerTime) > 10*time.Second {
		t.Fatalf("idle mark time %s is stale", idle.ServerTime)
	}
	// The slot's confirmed position follows the acknowledgement, and only it.
	for {
		got := pgtest.QueryValue[string](t, source, db, fmt.Sprintf("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '%s'", h.slot))
		lsn, _ := pglogrepl.ParseLSN(got)
		if lsn == tx.Info.EndLSN {
			break
		}
		if lsn > tx.Info.EndLSN {
			t.Fatalf("slot confirmed %s beyond the acknowledged %s", lsn, tx.Info.EndLSN)
		}
		select {
		case <-deadline:
			t.Fatalf("slot confirmed_flush_lsn %s never reached %s", lsn, tx.Info.EndLSN)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestShapeChangesAreRecordedAsDerivedDDL(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE t(id int PRIMARY KEY, a int, gone text)`)
	h := startStream(t, db, Config{})
	source.Exec(t, db, `INSERT INTO t VALUES (1, 1, 'x')`)
	records(t, h.nextTx())
	source.Exec(t, db, `ALTER TABLE t ADD COLUMN added numeric(10,2); ALTER TABLE t DROP COLUMN gone; ALTER TABLE t ALTER COLUMN a TYPE bigint`)
	source.Exec(t, db, `INSERT INTO t VALUES (2, 2, 3.5)`)
	recs := records(t, h.nextTx())
	if len(recs) != 2 || recs[0].T != segment.TypeDDL {
		t.Fatalf("records: %s", summary(recs))
	}
	want := `ALTER TABLE "public"."t" ALTER COLUMN "a" TYPE bigint; ALTER TABLE "public"."t" ADD COLUMN IF NOT EXISTS "added" numeric(10,2); ALTER TABLE "public"."t" DROP COLUMN IF EXISTS "gone"`
	if recs[0].SQL != want {
		t.Fatalf("derived DDL:\n got %s\nwant %s", recs[0].SQL, want)
	}
	if texts(recs[1].New) != "2,2,3.50" {
		t.Fatalf("insert after the change: %s", texts(recs[1].New))
	}
}

// A column's type dropped from the source before btfu decodes the rows
// that used it (the stream runs behind the catalog) is named from
// pgoutput's Type message, as of the change: the base type for a domain,
// which reads the values the same. format_type said "???", and replay
// stopped at a syntax error (corpus insert.sql, domain insert_pos_ints).
func TestTypeDroppedBeforeDecodingIsNamedFromTheStream(t *testing.T) {
	db := source.CreateDB(t)
	h := startStreamAfter(t, db, Config{}, func() {
		source.Exec(t, db, `CREATE DOMAIN pos_ints AS int[] CHECK (VALUE[1] > 0); CREATE TYPE pair AS (a int, b text);
			CREATE TABLE t (id int PRIMARY KEY, f pos_ints, p pair, ps pair[]);
			INSERT INTO t VALUES (1, '{1,2}', '(1,x)', ARRAY['(2,y)']::pair[])`)
		source.Exec(t, db, `DROP TABLE t; DROP DOMAIN pos_ints; DROP TYPE pair`)
	})
	recs := records(t, h.nextTx())
	if len(recs) != 1 || texts(recs[0].New) != `1,{1,2},(1,x),{"(2,y)"}` {
		t.Fatalf("records: %s", summary(recs))
	}
	rel := h.rcv.rels[recs[0].RelOID]
	var types []string
	for _, c := range rel.Columns {
		types = append(types, c.Type)
	}
	if got := strings.Join(types, " "); got != `integer "_int4" "public"."pair" "public"."_pair"` {
		t.Fatalf("column types %q", got)
	}
}

// pgoutput names pg_catalog "" in a Relation message: a user table moved
// there (ALTER TABLE … SET SCHEMA pg_catalog) keeps its schema's name.
func TestRelationInPgCatalogKeepsItsSchema(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE sys_t (id int PRIMARY KEY); ALTER TABLE sys_t SET SCHEMA pg_catalog`)
	h := startStream(t, db, Config{})
	source.Exec(t, db, `INSERT INTO pg_catalog.sys_t VALUES (1)`)
	recs := records(t, h.nextTx())
	if len(recs) != 1 {
		t.Fatalf("records: %s", summary(recs))
	}
	if rel := h.rcv.rels[recs[0].RelOID]; rel.Schema != "pg_catalog" {
		t.Fatalf("schema %q, want pg_catalog", rel.Schema)
	}
	source.Exec(t, db, `DROP TABLE pg_catalog.sys_t`)
}
