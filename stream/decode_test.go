package stream

// Real PostgreSQL output: the decoder against the raw messages of the SQL
// interface (pg_logical_slot_get_binary_changes, the newest protocol the
// server speaks), and the receiver against a replication connection.

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"

	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/segment"
)

// protoOptions are the pgoutput options of the newest protocol c speaks:
// 1 on 13; 2 with streaming and messages on 14; 3 on 15; 4 with parallel
// streaming (abort information in Stream Abort) from 16.
func protoOptions(c *pgtest.Cluster) []string {
	opts := []string{"publication_names", "pub"}
	switch {
	case c.Major <= 13:
		return append(opts, "proto_version", "1")
	case c.Major == 14:
		return append(opts, "proto_version", "2", "messages", "true", "streaming", "true")
	case c.Major == 15:
		return append(opts, "proto_version", "3", "messages", "true", "streaming", "true")
	}
	return append(opts, "proto_version", "4", "messages", "true", "streaming", "parallel")
}

// rawSlot is a pgoutput slot read through the SQL interface, which
// returns each message's bytes as the walsender would send them.
type rawSlot struct {
	t    testing.TB
	c    *pgtest.Cluster
	db   string
	name string
	opts []string
}

func newRawSlot(t testing.TB, c *pgtest.Cluster, db string, twoPhase bool, opts ...string) *rawSlot {
	t.Helper()
	s := &rawSlot{t: t, c: c, db: db, name: "raw_" + db, opts: opts}
	if twoPhase {
		c.Exec(t, db, "SELECT pg_create_logical_replication_slot($1, 'pgoutput', false, true)", s.name)
	} else {
		c.Exec(t, db, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", s.name)
	}
	t.Cleanup(func() {
		c.Exec(t, "postgres", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", s.name)
	})
	return s
}

// changes consumes and returns the messages decoded since the last call.
func (s *rawSlot) changes() ([][]byte, error) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.c.DSN(s.db))
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	args := []any{s.name}
	var ph []string
	for i, o := range s.opts {
		args = append(args, o)
		ph = append(ph, fmt.Sprintf("$%d", i+2))
	}
	rows, err := conn.Query(ctx, "SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL"+
		strings.Repeat(", ", min(1, len(ph)))+strings.Join(ph, ", ")+")", args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[[]byte])
}

func (s *rawSlot) mustChanges() [][]byte {
	s.t.Helper()
	raws, err := s.changes()
	if err != nil {
		s.t.Fatalf("get changes: %v", err)
	}
	return raws
}

// decoded is a message with the stream state it was decoded in.
type decoded struct {
	raw      []byte
	inStream bool
	msg      Message
	line     string
}

// decodeAll decodes messages in order as the receiver does, following
// Stream Start and Stop, and describes each on a line.
func decodeAll(t testing.TB, raws [][]byte) []decoded {
	t.Helper()
	names := map[uint32]string{}
	inStream := false
	var out []decoded
	for i, raw := range raws {
		m, err := DecodeMessage(raw, inStream)
		if err != nil {
			t.Fatalf("message %d (% x): %v", i, raw, err)
		}
		if !bytes.Equal(encode(m, inStream), raw) {
			t.Fatalf("message %d: % x encodes back as % x", i, raw, encode(m, inStream))
		}
		out = append(out, decoded{raw: raw, inStream: inStream, msg: m, line: describe(m, names)})
		switch m.(type) {
		case *StreamStartMsg:
			inStream = true
		case *StreamStopMsg:
			inStream = false
		}
	}
	return out
}

func describe(m Message, names map[uint32]string) string {
	tuple := func(tup Tuple) string {
		var parts []string
		for _, d := range tup {
			switch d.Kind {
			case DatumNull:
				parts = append(parts, "NULL")
			case DatumUnchanged:
				parts = append(parts, "UNCHANGED")
			case DatumBinary:
				parts = append(parts, "b:"+hex.EncodeToString(d.Data))
			default:
				if len(d.Data) > 40 {
					parts = append(parts, fmt.Sprintf("<%d bytes>", len(d.Data)))
				} else {
					parts = append(parts, "'"+string(d.Data)+"'")
				}
			}
		}
		return "(" + strings.Join(parts, ",") + ")"
	}
	old := func(kind byte, tup Tuple) string {
		if kind == 0 {
			return ""
		}
		return string(kind) + tuple(tup)
	}
	switch m := m.(type) {
	case *BeginMsg:
		return "begin"
	case *CommitMsg:
		return "commit"
	case *OriginMsg:
		return "origin " + m.Name
	case *RelationMsg:
		names[m.RelOID] = m.Name
		var cols []string
		for _, c := range m.Columns {
			k := ""
			if c.Key() {
				k = "*"
			}
			cols = append(cols, k+c.Name)
		}
		return fmt.Sprintf("relation %s.%s %c (%s)", m.Namespace, m.Name, m.ReplicaIdentity, strings.Join(cols, ","))
	case *TypeMsg:
		return "type " + m.Namespace + "." + m.Name
	case *InsertMsg:
		return "insert " + names[m.RelOID] + " " + tuple(m.New)
	case *UpdateMsg:
		return strings.Join(slices.DeleteFunc([]string{"update", names[m.RelOID], old(m.OldKind, m.Old), tuple(m.New)}, func(s string) bool { return s == "" }), " ")
	case *DeleteMsg:
		return "delete " + names[m.RelOID] + " " + old(m.OldKind, m.Old)
	case *TruncateMsg:
		var rels []string
		for _, oid := range m.RelOIDs {
			rels = append(rels, names[oid])
		}
		return fmt.Sprintf("truncate %s cascade=%v restart=%v", strings.Join(rels, ","), m.Cascade, m.RestartIdentity)
	case *LogicalMsg:
		kind := "non-transactional"
		if m.Transactional {
			kind = "transactional"
		}
		return fmt.Sprintf("message %s %s %q", kind, m.Prefix, m.Content)
	case *StreamStartMsg:
		if m.FirstSegment {
			return "stream start first"
		}
		return "stream start"
	case *StreamStopMsg:
		return "stream stop"
	case *StreamCommitMsg:
		return "stream commit"
	case *StreamAbortMsg:
		if m.SubXID != m.XID {
			return "stream abort subtransaction"
		}
		return "stream abort"
	case *BeginPrepareMsg:
		return "begin prepare " + m.GID
	case *PrepareMsg:
		return "prepare " + m.GID
	case *StreamPrepareMsg:
		return "stream prepare " + m.GID
	case *CommitPreparedMsg:
		return "commit prepared " + m.GID
	case *RollbackPreparedMsg:
		return "rollback prepared " + m.GID
	}
	return fmt.Sprintf("%T", m)
}

func lines(ds []decoded) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.line + "\n")
	}
	return b.String()
}

// serverSchema is the schema of the decoder's real-server tests; the
// fuzz test's seeds come from the same workload.
const serverSchema = `
	CREATE TABLE empty ();
	CREATE TABLE dropped (a int); ALTER TABLE dropped DROP COLUMN a; ALTER TABLE dropped REPLICA IDENTITY FULL;
	CREATE TABLE gen (g int GENERATED ALWAYS AS (1) STORED); ALTER TABLE gen REPLICA IDENTITY FULL;
	CREATE TABLE t (id int PRIMARY KEY, v text, big text);
	CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE TYPE pair AS (a int, b text);
	CREATE DOMAIN positive AS int CHECK (VALUE > 0);
	CREATE TABLE typed (id int PRIMARY KEY, m mood, p pair, d positive);
	CREATE TABLE parent (id serial PRIMARY KEY);
	CREATE TABLE child (id serial PRIMARY KEY, parent_id int REFERENCES parent);
	CREATE TABLE other (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
	CREATE PUBLICATION pub FOR ALL TABLES`

// serverSteps are statements and the messages the server sends for them.
// minMajor marks steps that need a feature of that major; maxMajor (when
// set) the last major that accepts the statement.
var serverSteps = []struct {
	name               string
	minMajor, maxMajor int
	sql                string
	want               []string
}{
	{"inserts into a table of no columns", 0, 0,
		`INSERT INTO empty SELECT FROM generate_series(1, 2)`,
		[]string{"begin", "relation public.empty d ()", "insert empty ()", "insert empty ()", "commit"}},
	{"insert and delete in a table whose only column was dropped", 0, 0,
		`INSERT INTO dropped DEFAULT VALUES; DELETE FROM dropped`,
		[]string{"begin", "relation public.dropped f ()", "insert dropped ()", "delete dropped O()", "commit"}},
	// From 18 on, REPLICA IDENTITY FULL over an unpublished generated
	// column refuses UPDATE, so no update of zero columns is sent there.
	{"update of a table with no published column", 0, 17,
		`INSERT INTO gen DEFAULT VALUES; UPDATE gen SET g = DEFAULT`,
		[]string{"begin", "relation public.gen f ()", "insert gen ()", "update gen O() ()", "commit"}},
	{"null, empty, TOASTed and key changes", 0, 0,
		`INSERT INTO t VALUES (1, NULL, ''), (2, 'a', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g));
		UPDATE t SET v = 'b' WHERE id = 2; UPDATE t SET id = 3 WHERE id = 1; DELETE FROM t WHERE id = 3`,
		[]string{"begin", "relation public.t d (*id,v,big)", "insert t ('1',NULL,'')", "insert t ('2','a',<12800 bytes>)",
			"update t ('2','b',UNCHANGED)", "update t K('1',NULL,NULL) ('3',NULL,'')", "delete t K('3',NULL,NULL)", "commit"}},
	{"columns of user-defined types", 0, 0,
		`INSERT INTO typed VALUES (1, 'happy', ROW(1, 'x y'), 7)`,
		[]string{"begin", "type public.mood", "type public.pair", "type .int4", "relation public.typed d (*id,m,p,d)", `insert typed ('1','happy','(1,"x y")','7')`, "commit"}},
	{"truncate of many relations, cascade, restart identity", 0, 0,
		`INSERT INTO parent DEFAULT VALUES; INSERT INTO child (parent_id) VALUES (1); INSERT INTO other DEFAULT VALUES;
		TRUNCATE parent, other RESTART IDENTITY CASCADE`,
		[]string{"begin", "relation public.parent d (*id)", "insert parent ('1')", "relation public.child d (*id,parent_id)", "insert child ('1','1')",
			"relation public.other d (*id)", "insert other ('1')",
			// TRUNCATE gives each table a new file: pgoutput describes them again
			"relation public.parent d (*id)", "relation public.other d (*id)", "relation public.child d (*id,parent_id)",
			"truncate parent,other,child cascade=true restart=true", "commit"}},
	{"transactional and non-transactional messages", 14, 0,
		`SELECT pg_logical_emit_message(true, 'x', 'y'); SELECT pg_logical_emit_message(false, 'nt', '\x00ff'::bytea)`,
		// the non-transactional one is sent at once, before the
		// transaction it was emitted in commits
		[]string{"message non-transactional nt \"\\x00\\xff\"", "begin", `message transactional x "y"`, "commit"}},
	// A non-transactional message is not flushed by itself (up to 16;
	// 17 can flush it): the server decodes it once something flushes the
	// WAL after it, here the next commit.
	{"a non-transactional message of a rolled-back transaction", 14, 0,
		`BEGIN; SELECT pg_logical_emit_message(false, 'nt', ''); ROLLBACK; INSERT INTO empty DEFAULT VALUES`,
		[]string{`message non-transactional nt ""`, "begin", "relation public.empty d ()", "insert empty ()", "commit"}},
}

func TestDecodeServerMessages(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, serverSchema)
	slot := newRawSlot(t, source, db, false, protoOptions(source)...)
	for _, step := range serverSteps {
		t.Run(step.name, func(t *testing.T) {
			if step.maxMajor != 0 && source.Major > step.maxMajor {
				if err := execErr(source, db, step.sql); err == nil {
					t.Fatalf("PostgreSQL %d accepted %s", source.Major, step.sql)
				}
				return
			}
			source.Exec(t, db, step.sql)
			got := decodeAll(t, slot.mustChanges())
			if source.Major < step.minMajor {
				return // decoded without error is all there is to check
			}
			if g, w := lines(got), strings.Join(step.want, "\n")+"\n"; g != w {
				t.Fatalf("messages:\n%s\nwant:\n%s", g, w)
			}
		})
	}
}

// execErr runs sql in db and returns its error.
func execErr(c *pgtest.Cluster, db, sql string) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// newOrigin creates a replication origin, before the slot: creating it is
// a transaction that 13 and 14 send, empty.
func newOrigin(t *testing.T, db string) string {
	origin := "o_" + db
	source.Exec(t, db, "SELECT pg_replication_origin_create($1)", origin)
	t.Cleanup(func() { source.Exec(t, "postgres", "SELECT pg_replication_origin_drop($1)", origin) })
	return origin
}

func TestDecodeServerOriginMessage(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION pub FOR ALL TABLES`)
	origin := newOrigin(t, db)
	slot := newRawSlot(t, source, db, false, protoOptions(source)...)
	conn := source.Connect(t, db)
	ctx := context.Background()
	for _, sql := range []string{"SELECT pg_replication_origin_session_setup('" + origin + "')", "INSERT INTO t VALUES (1)", "SELECT pg_replication_origin_session_reset()"} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	got := decodeAll(t, slot.mustChanges())
	want := "begin\norigin " + origin + "\nrelation public.t d (*id)\ninsert t ('1')\ncommit\n"
	if lines(got) != want {
		t.Fatalf("messages:\n%s\nwant:\n%s", lines(got), want)
	}
	if o := got[1].msg.(*OriginMsg); o.LSN != 0 {
		t.Fatalf("origin LSN %s; the session set none", o.LSN)
	}
}

func TestDecodeServerBinaryTupleData(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY, v text, n numeric); CREATE PUBLICATION pub FOR ALL TABLES`)
	opts := protoOptions(source)
	if source.Major >= 14 {
		opts = append(opts, "binary", "true")
	}
	slot := newRawSlot(t, source, db, false, opts...)
	source.Exec(t, db, `INSERT INTO t VALUES (100, 'x', NULL)`)
	want := "begin\nrelation public.t d (*id,v,n)\ninsert t (b:00000064,b:78,NULL)\ncommit\n"
	if source.Major < 14 { // binary is an option from 14 on
		want = "begin\nrelation public.t d (*id,v,n)\ninsert t ('100','x',NULL)\ncommit\n"
	}
	if got := lines(decodeAll(t, slot.mustChanges())); got != want {
		t.Fatalf("messages:\n%s\nwant:\n%s", got, want)
	}
}

// A transaction larger than logical_decoding_work_mem (64kB in TestMain)
// is streamed before it commits: its changes come in blocks, each with the
// xid of its (sub)transaction, and an aborted subtransaction is named.
func TestDecodeServerStreamedTransaction(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, serverSchema)
	slot := newRawSlot(t, source, db, false, protoOptions(source)...)
	conn := source.Connect(t, db)
	ctx := context.Background()
	for _, sql := range []string{
		"BEGIN",
		"INSERT INTO t SELECT g, repeat('p', 100) FROM generate_series(1, 2000) g",
		"SAVEPOINT s",
		"INSERT INTO empty SELECT FROM generate_series(1, 2000)",
		"INSERT INTO t SELECT g, 'aborted' FROM generate_series(5001, 7000) g",
		"ROLLBACK TO s",
		"INSERT INTO dropped SELECT FROM generate_series(1, 2000)",
		"INSERT INTO typed VALUES (1, 'sad', NULL, NULL)",
		"SELECT pg_logical_emit_message(true, 'btfu.ddl', 'in the stream')",
		"COMMIT",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	got := decodeAll(t, slot.mustChanges())
	counts := map[string]int{}
	var top uint32
	for _, d := range got {
		first, _, _ := strings.Cut(d.line, " (")
		counts[first]++
		if s, ok := d.msg.(*StreamStartMsg); ok {
			if top == 0 {
				top = s.XID
			} else if s.XID != top {
				t.Fatalf("stream start of %d inside the stream of %d", s.XID, top)
			}
		}
		if x, ok := changeXID(d.msg); ok && d.inStream != (x != 0) {
			t.Fatalf("%s: xid %d, in a stream: %v", d.line, x, d.inStream)
		}
	}
	if source.Major < 14 {
		// Protocol 1 has no streaming: the transaction comes whole.
		if counts["begin"] != 1 || counts["insert t"] != 2000 || counts["insert empty"] != 0 || counts["insert dropped"] != 2000 {
			t.Fatalf("counts %v", counts)
		}
		return
	}
	if got[0].line != "stream start first" || counts["stream start"] < 1 || counts["stream stop"] != counts["stream start"]+counts["stream start first"] {
		t.Fatalf("stream blocks: %v\nfirst: %s", counts, got[0].line)
	}
	// Changes of the rolled-back subtransaction are streamed only while
	// the server does not know of the rollback yet: here, decoding after
	// the commit, it skips them all (a "concurrent abort"), yet it still
	// sends the subtransaction's Stream Abort.
	if counts["insert t"] < 2000 || counts["insert t"] > 4000 || counts["insert empty"] > 2000 || counts["insert dropped"] != 2000 || counts["insert typed"] != 1 ||
		counts["type public.mood"] != 1 || counts[`message transactional btfu.ddl "in the stream"`] != 1 {
		t.Fatalf("counts %v", counts)
	}
	var abort *StreamAbortMsg
	for _, d := range got {
		if a, ok := d.msg.(*StreamAbortMsg); ok {
			abort = a
		}
	}
	if abort == nil || abort.XID != top || abort.SubXID == top {
		t.Fatalf("no abort of the rolled-back subtransaction: %+v\n%v", abort, counts)
	}
	for _, d := range got {
		ins, ok := d.msg.(*InsertMsg)
		if !ok {
			continue
		}
		inSub := strings.HasPrefix(d.line, "insert empty") || strings.Contains(d.line, "'aborted'")
		if inSub != (ins.XID == abort.SubXID) || ins.XID == 0 {
			t.Fatalf("%s: xid %d; the subtransaction is %d, the transaction %d", d.line, ins.XID, abort.SubXID, top)
		}
	}
	if parallel := source.Major >= 16; abort.HasAbortInfo != parallel || parallel && (abort.AbortLSN == 0 || abort.AbortTime.IsZero()) {
		t.Fatalf("abort information %+v on %d", abort, source.Major)
	}
	if c, ok := got[len(got)-1].msg.(*StreamCommitMsg); !ok || c.XID != top || c.EndLSN <= c.CommitLSN {
		t.Fatalf("last message %s %+v", got[len(got)-1].line, got[len(got)-1].msg)
	}
}

// changeXID is the xid of a message that carries one inside a stream
// block (0 outside).
func changeXID(m Message) (uint32, bool) {
	switch m := m.(type) {
	case *RelationMsg:
		return m.XID, true
	case *TypeMsg:
		return m.XID, true
	case *InsertMsg:
		return m.XID, true
	case *UpdateMsg:
		return m.XID, true
	case *DeleteMsg:
		return m.XID, true
	case *TruncateMsg:
		return m.XID, true
	case *LogicalMsg:
		return m.XID, true
	}
	return 0, false
}

// Two-phase messages, on a server that allows prepared transactions.
// btfu does not enable two_phase; the decoder reads them all the same.
func TestDecodeServerTwoPhaseMessages(t *testing.T) {
	c, err := pgtest.Start(pgtest.Options{Settings: map[string]string{"max_prepared_transactions": "4", "logical_decoding_work_mem": "64kB"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	db := c.CreateDB(t)
	c.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION pub FOR ALL TABLES`)
	slot := newRawSlot(t, c, db, c.Major >= 14, append(protoOptions(c), "two_phase", "on")...)
	if c.Major < 15 {
		// pgoutput decodes prepared transactions from 15 on.
		if _, err := slot.changes(); err == nil {
			t.Fatalf("PostgreSQL %d accepted two_phase", c.Major)
		}
		return
	}
	c.Exec(t, db, `BEGIN; INSERT INTO t VALUES (1); PREPARE TRANSACTION 'g1'`)
	c.Exec(t, db, `COMMIT PREPARED 'g1'`)
	c.Exec(t, db, `BEGIN; INSERT INTO t VALUES (2); PREPARE TRANSACTION 'g2'`)
	c.Exec(t, db, `ROLLBACK PREPARED 'g2'`)
	c.Exec(t, db, `BEGIN; INSERT INTO t SELECT generate_series(10, 3000); PREPARE TRANSACTION 'g3'`)
	c.Exec(t, db, `COMMIT PREPARED 'g3'`)
	got := decodeAll(t, slot.mustChanges())
	var summary []string
	for _, d := range got {
		if !strings.HasPrefix(d.line, "insert") && !strings.HasPrefix(d.line, "stream st") {
			summary = append(summary, d.line)
		}
	}
	want := []string{"begin prepare g1", "relation public.t d (*id)", "prepare g1", "commit prepared g1",
		"begin prepare g2", "prepare g2", "rollback prepared g2",
		"relation public.t d (*id)", "stream prepare g3", "commit prepared g3"}
	if strings.Join(summary, "\n") != strings.Join(want, "\n") {
		t.Fatalf("messages:\n%s\nwant:\n%s", strings.Join(summary, "\n"), strings.Join(want, "\n"))
	}
	for _, d := range got {
		switch m := d.msg.(type) {
		case *BeginPrepareMsg:
			if m.XID == 0 || m.PrepareLSN == 0 || m.EndLSN <= m.PrepareLSN || m.PrepareTime.IsZero() {
				t.Fatalf("%+v", m)
			}
		case *RollbackPreparedMsg:
			if m.XID == 0 || m.PrepareEndLSN == 0 || m.RollbackEndLSN <= m.PrepareEndLSN || m.RollbackTime.Before(m.PrepareTime) {
				t.Fatalf("%+v", m)
			}
		}
	}
}

// The receiver, end to end.

// next is harness.nextTx, except that a receiver that stopped leaves its
// error for the cleanup (nextTx takes it, and the cleanup then waits
// forever).
func (h *harness) next() *Tx {
	h.t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case ev := <-h.events:
			if ev.Tx != nil {
				return ev.Tx
			}
		case err := <-h.done:
			h.done <- err
			h.t.Fatalf("receiver stopped: %v", err)
		case <-timeout:
			h.t.Fatal("no transaction within 60s")
		}
	}
}

// streamConfig is the receiver configuration for the source's major: 13
// speaks protocol 1 only.
func streamConfig() Config {
	if source.Major < 14 {
		return Config{ProtoVersion: 1}
	}
	return Config{ProtoVersion: 2, Streaming: true}
}

// segmentOf writes tx into a segment and reads back its change records and
// the relations the segment carries.
func segmentOf(t *testing.T, tx *Tx) ([]*segment.Record, map[string]*segment.Relation) {
	t.Helper()
	defer tx.Release()
	var buf bytes.Buffer
	w, err := segment.NewWriter(&buf, segment.Header{Source: "t"}, zstd.SpeedFastest)
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
	var recs []*segment.Record
	rels := map[string]*segment.Relation{}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return recs, rels
		}
		if err != nil {
			t.Fatal(err)
		}
		switch rec.T {
		case segment.TypeRelation:
			rels[rec.Relation.Name] = rec.Relation
		case segment.TypeBegin, segment.TypeCommit:
		default:
			recs = append(recs, rec)
		}
	}
}

// Zero-column rows (issue 12): pglogrepl refused the 7-byte Insert of a
// table without columns, and capture retried that message forever.
func TestReceiverZeroColumnTables(t *testing.T) {
	db := source.CreateDB(t)
	// gen's only column is generated, and generated columns are not
	// published: its rows have no columns, yet an UPDATE can name one.
	source.Exec(t, db, `CREATE TABLE empty ();
		CREATE TABLE dropped (a int); ALTER TABLE dropped DROP COLUMN a; ALTER TABLE dropped REPLICA IDENTITY FULL;
		CREATE TABLE gen (g int GENERATED ALWAYS AS (1) STORED); ALTER TABLE gen REPLICA IDENTITY FULL`)
	h := startStream(t, db, streamConfig())
	source.Exec(t, db, `INSERT INTO empty DEFAULT VALUES; INSERT INTO empty SELECT FROM generate_series(1, 2)`)
	source.Exec(t, db, `INSERT INTO dropped DEFAULT VALUES`)
	source.Exec(t, db, `DELETE FROM dropped`)
	want := []string{"i() i() i()", "i()", "d()", "i() u() d()"}
	if source.Major >= 18 {
		// 18 refuses UPDATE and DELETE under REPLICA IDENTITY FULL over
		// an unpublished generated column.
		if err := execErr(source, db, `UPDATE gen SET g = DEFAULT`); err == nil {
			t.Fatal("PostgreSQL 18 updated gen")
		}
		source.Exec(t, db, `INSERT INTO gen DEFAULT VALUES`)
		want[3] = "i()"
	} else {
		source.Exec(t, db, `BEGIN; INSERT INTO gen DEFAULT VALUES; UPDATE gen SET g = DEFAULT; DELETE FROM gen; COMMIT`)
	}
	for i, w := range want {
		recs, rels := segmentOf(t, h.next())
		if got := summary(recs); got != w {
			t.Fatalf("tx %d: %s, want %s", i, got, w)
		}
		for _, r := range recs {
			var rel *segment.Relation
			for _, c := range rels {
				if c.OID == r.RelOID {
					rel = c
				}
			}
			if rel == nil || len(rel.Columns) != 0 {
				t.Fatalf("tx %d: relation %+v, want one of no columns", i, rel)
			}
			if len(r.New) != 0 || len(r.Old) != 0 {
				t.Fatalf("tx %d: values in a row of no columns: %+v", i, r)
			}
			if (r.T == segment.TypeDelete || r.T == segment.TypeUpdate) && r.OldKind != "O" {
				t.Fatalf("tx %d: REPLICA IDENTITY FULL %s without its old row: %+v", i, r.T, r)
			}
		}
	}
}

func TestReceiverEmptyTransactions(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY)`)
	h := startStream(t, db, streamConfig())
	// Transactions with nothing to publish: DDL only, and changes all
	// rolled back to a savepoint. PostgreSQL 15 and later do not send
	// them; 13 and 14 send a Begin and a Commit.
	source.Exec(t, db, `CREATE TABLE other (a int)`)
	source.Exec(t, db, `BEGIN; SAVEPOINT s; INSERT INTO t VALUES (1); ROLLBACK TO s; COMMIT`)
	source.Exec(t, db, `INSERT INTO t VALUES (2)`)
	for {
		tx := h.next()
		recs := records(t, tx)
		if got := summary(recs); got == "i(2)" {
			return
		} else if len(recs) != 0 || tx.Info.Changes != 0 {
			t.Fatalf("before the insert: %s (%d changes)", got, tx.Info.Changes)
		}
	}
}

func TestReceiverLogicalMessages(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY)`)
	h := startStream(t, db, streamConfig())
	source.Exec(t, db, `SELECT pg_logical_emit_message(true, 'x', 'y')`)
	source.Exec(t, db, `SELECT pg_logical_emit_message(false, 'nt', 'outside')`)
	source.Exec(t, db, `BEGIN; INSERT INTO t VALUES (1); SELECT pg_logical_emit_message(false, 'nt', 'inside');
		SELECT pg_logical_emit_message(true, 'utf8', 'é €'); SELECT pg_logical_emit_message(true, 'e', ''); COMMIT`)
	source.Exec(t, db, `BEGIN; SELECT pg_logical_emit_message(false, 'nt', 'rolled back'); SELECT pg_logical_emit_message(true, 'gone', 'x'); ROLLBACK`)
	source.Exec(t, db, `INSERT INTO t VALUES (2)`)

	// Non-transactional messages belong to no transaction: btfu emits
	// none and keeps none. Protocol 1 (13) sends no messages at all.
	want := []string{"msg(x)=y", "i(1) msg(utf8)=é € msg(e)=", "i(2)"}
	if source.Major < 14 {
		want = []string{"i(1)", "i(2)"}
	}
	var got []string
	for len(got) == 0 || got[len(got)-1] != "i(2)" {
		var parts []string
		for _, r := range records(t, h.next()) {
			p := summary([]*segment.Record{r})
			if r.T == segment.TypeMessage {
				p += "=" + r.Content
			}
			parts = append(parts, p)
		}
		if len(parts) > 0 { // 13 and 14 send empty transactions too
			got = append(got, strings.Join(parts, " "))
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("transactions %q, want %q", got, want)
	}
}

func TestReceiverTruncateOfManyRelations(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE parent (id serial PRIMARY KEY);
		CREATE TABLE child (id serial PRIMARY KEY, parent_id int REFERENCES parent);
		CREATE TABLE other (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
		CREATE TABLE empty ();
		INSERT INTO parent DEFAULT VALUES; INSERT INTO child (parent_id) VALUES (1); INSERT INTO empty DEFAULT VALUES`)
	h := startStream(t, db, streamConfig())
	source.Exec(t, db, `TRUNCATE parent, other, empty RESTART IDENTITY CASCADE`)
	source.Exec(t, db, `TRUNCATE other`)
	recs, rels := segmentOf(t, h.next())
	if summary(recs) != "trunc(4,true,true)" {
		t.Fatalf("records %s", summary(recs))
	}
	var names []string
	for _, oid := range recs[0].RelOIDs {
		for name, rel := range rels {
			if rel.OID == oid {
				names = append(names, name)
			}
		}
	}
	if strings.Join(names, ",") != "parent,other,empty,child" {
		t.Fatalf("truncated %v (relations carried: %v)", names, rels)
	}
	if got := summary(records(t, h.next())); got != "trunc(1,false,false)" {
		t.Fatalf("plain truncate: %s", got)
	}
}

func TestReceiverOriginAndTypeMessages(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE TYPE pair AS (a int, b text);
		CREATE DOMAIN positive AS int CHECK (VALUE > 0);
		CREATE TABLE typed (id int PRIMARY KEY, m mood, p pair, d positive, ms mood[])`)
	origin := newOrigin(t, db)
	h := startStream(t, db, streamConfig())
	conn := source.Connect(t, db)
	ctx := context.Background()
	for _, sql := range []string{
		"SELECT pg_replication_origin_session_setup('" + origin + "')",
		`INSERT INTO typed VALUES (1, 'happy', ROW(1, 'x y'), 5, '{sad,happy}')`,
		"SELECT pg_replication_origin_session_reset()",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	source.Exec(t, db, `INSERT INTO typed VALUES (2, 'sad', NULL, NULL, NULL)`)
	recs, rels := segmentOf(t, h.next())
	if got := summary(recs); got != `i(1,happy,(1,"x y"),5,{sad,happy})` {
		t.Fatalf("from a replication origin: %s", got)
	}
	var types []string
	for _, c := range rels["typed"].Columns {
		types = append(types, c.Type)
	}
	if strings.Join(types, ",") != "integer,mood,pair,positive,mood[]" {
		t.Fatalf("column types %v", types)
	}
	if got := summary(records(t, h.next())); got != "i(2,sad,NULL,NULL,NULL)" {
		t.Fatalf("next: %s", got)
	}
}

// A streamed transaction whose Relation, Type and zero-column changes
// arrive inside stream blocks, with a rolled-back subtransaction.
func TestReceiverStreamedTransactionWithZeroColumnRows(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE big (id int PRIMARY KEY, pad text); CREATE TABLE empty ();
		CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE TABLE typed (id int PRIMARY KEY, m mood);
		CREATE TABLE small (id int PRIMARY KEY); INSERT INTO small VALUES (1)`)
	h := startStream(t, db, streamConfig())
	conn := source.Connect(t, db)
	ctx := context.Background()
	for _, sql := range []string{
		"BEGIN",
		"INSERT INTO big SELECT g, repeat('p', 100) FROM generate_series(1, 3000) g",
		"SAVEPOINT s",
		"INSERT INTO empty SELECT FROM generate_series(1, 3000)",
		"INSERT INTO big SELECT g, 'aborted' FROM generate_series(3001, 4000) g",
		"ROLLBACK TO s",
		"INSERT INTO empty SELECT FROM generate_series(1, 2000)",
		"INSERT INTO typed VALUES (1, 'happy')",
		"TRUNCATE small",
		"SELECT pg_logical_emit_message(true, 'btfu.ddl', 'in the stream')",
		"INSERT INTO big VALUES (0, 'last')",
		"COMMIT",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	msgs := 1
	if source.Major < 14 {
		msgs = 0 // no logical messages in protocol 1
	}
	tx := h.next()
	if want := 3000 + 2000 + 3 + msgs; tx.Info.Changes != want {
		t.Fatalf("changes %d, want %d", tx.Info.Changes, want)
	}
	recs, rels := segmentOf(t, tx)
	counts := map[string]int{}
	for _, r := range recs {
		switch r.T {
		case segment.TypeInsert:
			for name, rel := range rels {
				if rel.OID == r.RelOID {
					counts[name]++
				}
			}
			if len(r.New) > 1 && r.New[1].Text == "aborted" {
				t.Fatal("a change of the rolled-back savepoint was kept")
			}
		default:
			counts[r.T]++
		}
	}
	if counts["big"] != 3001 || counts["empty"] != 2000 || counts["typed"] != 1 || counts[segment.TypeTruncate] != 1 || counts[segment.TypeMessage] != msgs {
		t.Fatalf("counts %v", counts)
	}
	if rels["typed"].Columns[1].Type != "mood" || len(rels["empty"].Columns) != 0 {
		t.Fatalf("relations %+v %+v", rels["typed"], rels["empty"])
	}
	if last := recs[len(recs)-1]; last.T != segment.TypeInsert || texts(last.New) != "0,last" {
		t.Fatalf("order not kept: last %+v", last)
	}
}
