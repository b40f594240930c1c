package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/segment"
)

// netTables are the tables of TestSetBasedReplayMatchesTheSource.
var netTables = []string{"net", "net2", "uniq", "fulltab", "fullkey", "parted", "items", "toasty"}

func netHash(t *testing.T, c *pgtest.Cluster, db string) map[string]string {
	out := map[string]string{}
	for _, tbl := range netTables {
		out[tbl] = pgtest.QueryValue[string](t, c, db, fmt.Sprintf("SELECT coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), 'empty') FROM %s x", tbl))
	}
	return out
}

// Set-based replay restores, at every mark, what the source held there:
// each net-effect rule in source transactions as pgoutput streams them
// (TOAST values left unchanged included), and, in the same target
// transactions, the changes that go one by one (key changes, a swap of
// values of another unique index, REPLICA IDENTITY FULL, a partitioned
// table's rows moving, TRUNCATE, DDL).
func TestSetBasedReplayMatchesTheSource(t *testing.T) {
	e := capturingWith(t, nil, `
		CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
		CREATE DOMAIN posint AS int CHECK (VALUE > 0);
		CREATE TABLE net(id int PRIMARY KEY, name text, big text, n posint, m mood, tags text[], r int4range, p point);
		CREATE TABLE net2(a text, b int, v jsonb, PRIMARY KEY (a, b));
		CREATE TABLE uniq(id int PRIMARY KEY, email text UNIQUE, v int);
		CREATE TABLE fulltab(a int, b text); ALTER TABLE fulltab REPLICA IDENTITY FULL;
		INSERT INTO fulltab VALUES (7, 'd'), (7, 'd'), (8, NULL), (9, 'e');
		CREATE TABLE fullkey(id int PRIMARY KEY, n numeric, j json, t text); ALTER TABLE fullkey REPLICA IDENTITY FULL;
		INSERT INTO fullkey SELECT g, g + 0.50, json_build_object('g', g), CASE WHEN g = 3 THEN (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i) END
			FROM generate_series(1, 20) g;
		CREATE TABLE parted(id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
		CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
		CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (10) TO (20);
		INSERT INTO net SELECT g, 'n' || g, CASE WHEN g % 2 = 0 THEN (SELECT string_agg(md5((g * 1000 + i)::text), '') FROM generate_series(1, 300) i) END,
			g, 'ok', ARRAY['a', NULL, 'c' || g], int4range(g, g + 10), point(g, g) FROM generate_series(1, 40) g;
		INSERT INTO net2 SELECT 'k' || g, g, jsonb_build_object('g', g) FROM generate_series(1, 20) g;
		INSERT INTO uniq SELECT g, 'e' || g, g FROM generate_series(1, 10) g;
		INSERT INTO parted SELECT g, g % 20, 'p' || g FROM generate_series(1, 20) g`)
	steps := []struct{ name, sql string }{
		{"net rules", `BEGIN;
			-- insert + updates: one insert of the final row (the big value
			-- stays unchanged TOAST in the updates)
			INSERT INTO net VALUES (100, 'new', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i), 1, 'sad', '{}', NULL, point(0, 0));
			UPDATE net SET name = 'newer' WHERE id = 100;
			UPDATE net SET n = 7, m = 'happy' WHERE id = 100;
			-- update + update: the last image; unchanged TOAST keeps the
			-- older value, set by neither or by the first update
			UPDATE net SET name = 'u1', n = 2 WHERE id IN (2, 3, 4);
			UPDATE net SET name = 'u2', tags = ARRAY['x', NULL] WHERE id IN (2, 3);
			UPDATE net SET big = 'small now', name = 'u3' WHERE id = 6;
			UPDATE net SET name = 'u4' WHERE id = 6;
			UPDATE net SET r = 'empty', p = point(-1, 1.5) WHERE id = 8;
			UPDATE net SET name = NULL WHERE id = 8;
			-- insert + delete: nothing
			INSERT INTO net VALUES (101, 'gone', NULL, 1, 'ok', NULL, NULL, NULL);
			UPDATE net SET name = 'still gone' WHERE id = 101;
			DELETE FROM net WHERE id = 101;
			-- update + delete: delete
			UPDATE net SET name = 'doomed' WHERE id = 10;
			DELETE FROM net WHERE id = 10;
			-- delete + insert: delete, then insert of the final row
			DELETE FROM net WHERE id = 12;
			INSERT INTO net VALUES (12, 'reborn', NULL, 3, 'sad', NULL, NULL, NULL);
			UPDATE net SET name = 'reborn2' WHERE id = 12;
			-- a composite key
			UPDATE net2 SET v = v || '{"x": 1}' WHERE b % 3 = 0;
			UPDATE net2 SET v = v || '{"y": 2}' WHERE b % 2 = 0;
			DELETE FROM net2 WHERE b = 5;
			INSERT INTO net2 VALUES ('k5', 5, '{"back": true}');
			-- REPLICA IDENTITY FULL: rows named by all their values; one
			-- of two duplicates changed, NULL, numeric and json (matched
			-- by their text), a TOAST value left unchanged, and a column
			-- of a unique index changed (one by one)
			UPDATE fulltab SET b = 'd2' WHERE ctid = (SELECT min(ctid) FROM fulltab WHERE a = 7);
			UPDATE fulltab SET b = 'n' WHERE a = 8;
			DELETE FROM fulltab WHERE a = 9;
			UPDATE fullkey SET n = n + 0.10 WHERE id <= 5;
			UPDATE fullkey SET j = '{"b": [2, 2.0]}' WHERE id IN (2, 3);
			DELETE FROM fullkey WHERE id = 4;
			INSERT INTO fullkey VALUES (100, 1.50, '{"x": [1, 2]}', NULL);
			UPDATE fullkey SET t = 'changed' WHERE id = 100;
			UPDATE fullkey SET id = 1000 WHERE id = 6;
			UPDATE fullkey SET t = 'after the key' WHERE id = 1000;
			COMMIT`},
		{"one by one", `BEGIN;
			UPDATE net SET name = 'before key change' WHERE id = 14;
			-- a key change
			UPDATE net SET id = 1014 WHERE id = 14;
			UPDATE net SET name = 'after key change' WHERE id = 1014;
			-- a swap of another unique index's values
			UPDATE uniq SET email = 'swap' WHERE id = 1;
			UPDATE uniq SET email = 'e1' WHERE id = 2;
			UPDATE uniq SET email = 'e2' WHERE id = 1;
			-- REPLICA IDENTITY FULL with duplicates
			INSERT INTO fulltab VALUES (1, 'x'), (1, 'x'), (2, NULL);
			UPDATE fulltab SET b = 'y' WHERE ctid = (SELECT min(ctid) FROM fulltab WHERE a = 1);
			-- rows moving between partitions
			UPDATE parted SET k = 15 WHERE id = 3;
			UPDATE parted SET v = 'moved' WHERE id = 3;
			INSERT INTO net VALUES (200, 'x', NULL, 1, 'ok', NULL, NULL, NULL);
			COMMIT`},
		{"truncate and ddl", `BEGIN;
			UPDATE net SET name = 'before truncate' WHERE id = 20;
			UPDATE items SET qty = 99;
			TRUNCATE items;
			INSERT INTO items(name, qty) VALUES ('after truncate', 1);
			UPDATE items SET qty = 2 WHERE name = 'after truncate';
			UPDATE net SET name = 'before ddl' WHERE id = 21;
			ALTER TABLE net ADD COLUMN extra int;
			UPDATE net SET extra = id, name = 'after ddl' WHERE id IN (21, 22);
			INSERT INTO net VALUES (300, 'x', NULL, 1, 'ok', NULL, NULL, NULL, 300);
			UPDATE net SET extra = 301 WHERE id = 300;
			UPDATE net SET name = name || id WHERE name NOT IN ('n' || id);
			CREATE UNIQUE INDEX net_name ON net(name);
			UPDATE net SET name = 'tmp' WHERE id = 24;
			UPDATE net SET name = 'n24' WHERE id = 25;
			UPDATE net SET name = 'n25' WHERE id = 24;
			COMMIT`},
	}
	for i := range 5 {
		// Many small transactions in one target transaction, ending
		// with a mark among them.
		steps = append(steps, struct{ name, sql string }{fmt.Sprintf("small %d", i),
			fmt.Sprintf(`UPDATE net SET n = n + 1 WHERE id = %d; INSERT INTO toasty VALUES (%d, NULL, 1); UPDATE toasty SET n = n + 1`, 30+i, i)})
	}
	var marks []mark
	for _, s := range steps {
		source.Exec(t, e.db, s.sql)
		m := e.mark(t, s.name)
		m.hash = netHash(t, source, e.db)
		marks = append(marks, m)
	}
	e.waitStored(t, marks[len(marks)-1])
	for _, i := range []int{0, 1, 2, 4, len(marks) - 1} {
		m := marks[i]
		t.Run(m.name, func(t *testing.T) {
			db, sum, err := e.restore(t, Target{LSN: m.lsn})
			if err != nil {
				t.Fatal(err)
			}
			got := netHash(t, target, db)
			for _, tbl := range netTables {
				if got[tbl] != m.hash[tbl] {
					t.Errorf("table %s differs from the source at %s:\n%s", tbl, m.name,
						pgtest.QueryValue[string](t, target, db, "SELECT string_agg(x::text, E'\\n' ORDER BY x::text) FROM "+tbl+" x"))
				}
			}
			if sum.NetRows == 0 || (i > 0 && sum.NetRows >= sum.Rows) {
				t.Errorf("%d of %d changes applied set-based; want some (all in the first transaction)", sum.NetRows, sum.Rows)
			}
			if sum.NetFallbacks != 0 {
				t.Errorf("%d set-based statements failed and were applied one by one; want every order-sensitive change one by one from the start", sum.NetFallbacks)
			}
		})
	}
}

// testTx is a source transaction for a hand-made segment.
type testTx struct {
	changes []testChange
}

type testChange struct {
	rel *segment.Relation
	rec segment.Record
}

// testSegment writes txs into a segment, one commit LSN apart (the
// first at 0/3000100).
func testSegment(t *testing.T, txs []testTx) *segment.Reader {
	t.Helper()
	var buf bytes.Buffer
	w, err := segment.NewWriter(&buf, segment.Header{Format: 1, Source: "app", ChainID: 1}, zstd.SpeedFastest)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for n, tx := range txs {
		lsn := segment.LSN(0x3000000 + 0x100*(n+1))
		if err := w.BeginTx(segment.TxInfo{XID: uint32(7 + n), CommitLSN: lsn, EndLSN: lsn + 0x30, CommitTime: at, Changes: len(tx.changes)}); err != nil {
			t.Fatal(err)
		}
		for _, c := range tx.changes {
			rec := c.rec
			if err := w.WriteChange(&rec, c.rel); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.CommitTx(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := segment.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// replayAll replays r with p and commits what it applied.
func replayAll(ctx context.Context, p *replayer, r *segment.Reader) error {
	err := p.segment(ctx, r)
	if err == nil {
		err = p.flush(ctx)
	}
	return err
}

func tv(s ...string) []segment.Value {
	var out []segment.Value
	for _, x := range s {
		if x == "-" {
			out = append(out, segment.Value{Kind: segment.Null})
		} else {
			out = append(out, segment.TextValue(x))
		}
	}
	return out
}

// Tables where order within the target transaction may matter go one
// change at a time without trying a set-based statement first (no
// fallback), and keyed tables without such a reason go set-based, as do
// REPLICA IDENTITY FULL tables: an update of one of two duplicate rows
// changes one of them.
func TestSetBasedApplyFallsBackWhereOrderMatters(t *testing.T) {
	ctx := context.Background()
	db := target.CreateDB(t)
	target.Exec(t, db, `CREATE TABLE keyed(id int PRIMARY KEY, v text);
		CREATE TABLE uniq(id int PRIMARY KEY, email text UNIQUE);
		CREATE TABLE excl(id int PRIMARY KEY, r int4range, EXCLUDE USING gist (r WITH &&));
		CREATE TABLE parted(id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
		CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
		CREATE TABLE fulltab(a int, b text);
		INSERT INTO keyed VALUES (1, 'a'), (2, 'b');
		INSERT INTO uniq VALUES (1, 'x'), (2, 'y');
		INSERT INTO excl VALUES (1, '[0,10)'), (2, '[10,20)');
		INSERT INTO parted VALUES (1, 'p');
		INSERT INTO fulltab VALUES (1, 'f'), (1, 'f')`)
	rel := func(oid uint32, name, ident string, cols ...segment.Column) *segment.Relation {
		return &segment.Relation{OID: oid, Schema: "public", Name: name, ReplicaIdentity: ident, Columns: cols}
	}
	id := segment.Column{Name: "id", Type: "integer", Key: true}
	keyed := rel(16400, "keyed", "d", id, segment.Column{Name: "v", Type: "text"})
	uniq := rel(16401, "uniq", "d", id, segment.Column{Name: "email", Type: "text"})
	excl := rel(16402, "excl", "d", id, segment.Column{Name: "r", Type: "int4range"})
	parted := rel(16403, "parted", "d", id, segment.Column{Name: "v", Type: "text"})
	full := rel(16404, "fulltab", "f", segment.Column{Name: "a", Type: "integer"}, segment.Column{Name: "b", Type: "text"})
	u := func(r *segment.Relation, vals ...string) testChange {
		return testChange{r, segment.Record{T: segment.TypeUpdate, RelOID: r.OID, New: tv(vals...)}}
	}
	r := testSegment(t, []testTx{
		{[]testChange{
			u(keyed, "1", "a2"), u(keyed, "2", "b2"), u(keyed, "1", "a3"),
			// swap x and y, through a third value
			u(uniq, "1", "t"), u(uniq, "2", "x"), u(uniq, "1", "y"),
			// swap the ranges
			u(excl, "1", "[100,110)"), u(excl, "2", "[0,10)"), u(excl, "1", "[10,20)"),
			u(parted, "1", "p2"),
			{full, segment.Record{T: segment.TypeUpdate, RelOID: full.OID, OldKind: "O", Old: tv("1", "f"), New: tv("1", "g")}},
		}},
		{[]testChange{u(keyed, "2", "b3")}},
	})
	p := &replayer{conn: target.Connect(t, db), target: Target{Latest: true}}
	err := replayAll(ctx, p, r)
	if err != nil {
		t.Fatal(err)
	}
	if p.netFallbacks != 0 || p.netRows != 5 {
		t.Errorf("%d changes set-based, %d fallbacks; want keyed's 4 and fulltab's 1 set-based and no fallback", p.netRows, p.netFallbacks)
	}
	got := pgtest.QueryValue[string](t, target, db, `SELECT concat_ws(' ',
		(SELECT string_agg(format('%s=%s', id, v), ',' ORDER BY id) FROM keyed),
		(SELECT string_agg(format('%s=%s', id, email), ',' ORDER BY id) FROM uniq),
		(SELECT string_agg(format('%s=%s', id, r), ',' ORDER BY id) FROM excl),
		(SELECT string_agg(format('%s=%s', id, v), ',' ORDER BY id) FROM parted),
		(SELECT string_agg(format('%s=%s', a, b), ',' ORDER BY b) FROM fulltab))`)
	if want := "1=a3,2=b3 1=y,2=x 1=[10,20),2=[0,10) 1=p2 1=f,1=g"; got != want {
		t.Errorf("target holds\n%s\nwant\n%s", got, want)
	}
}

// A set-based statement touching another number of rows than it names
// (here an update of a row the target lacks, in the third of several
// transactions sharing a target transaction) is applied again one change
// at a time, and the error names that change's transaction, table and key.
func TestSetBasedMismatchNamesTheRow(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  segment.Record
		key  string
		want []string
	}{
		{"update", segment.Record{T: segment.TypeUpdate, New: tv("42", "x")}, "id=42", []string{"UPDATE affected 0 rows, want exactly 1"}},
		{"delete", segment.Record{T: segment.TypeDelete, OldKind: "K", Old: tv("42", "-")}, "id=42", []string{"DELETE affected 0 rows, want exactly 1"}},
		{"insert", segment.Record{T: segment.TypeInsert, New: tv("3", "taken")}, "id=3", []string{"duplicate key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := target.CreateDB(t)
			target.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 'v' FROM generate_series(1, 3) g")
			items := &segment.Relation{OID: 16400, Schema: "public", Name: "items", ReplicaIdentity: "d", Columns: []segment.Column{
				{Name: "id", Type: "integer", Key: true}, {Name: "v", Type: "text"}}}
			bad := tc.bad
			bad.RelOID = items.OID
			ch := func(rec segment.Record) testChange { rec.RelOID = items.OID; return testChange{items, rec} }
			r := testSegment(t, []testTx{
				{[]testChange{ch(segment.Record{T: segment.TypeUpdate, New: tv("1", "one")}), ch(segment.Record{T: segment.TypeInsert, New: tv("10", "ten")})}},
				{[]testChange{ch(segment.Record{T: segment.TypeUpdate, New: tv("2", "two")})}},
				{[]testChange{ch(segment.Record{T: segment.TypeUpdate, New: tv("10", "TEN")}), {items, bad}}},
			})
			failsOneByOne(t, db, r, append([]string{"0/3000300", "public.items", tc.key}, tc.want...)...)
		})
	}
}

// A REPLICA IDENTITY FULL row the target lacks is found missing by
// set-based replay too, whatever its changes add up to: changed and
// changed back (nothing to set, but looked for), or deleted, where the
// target has a row that differs only in a value that is equal but not
// the same text (numeric 1.0 and 1.00).
func TestSetBasedFullMismatchNamesTheRow(t *testing.T) {
	full := &segment.Relation{OID: 16400, Schema: "public", Name: "fulltab", ReplicaIdentity: "f", Columns: []segment.Column{
		{Name: "a", Type: "integer", Key: true}, {Name: "n", Type: "numeric", Key: true}}}
	ch := func(rec segment.Record) testChange { rec.RelOID = full.OID; return testChange{full, rec} }
	upd := func(from, to string) testChange {
		return ch(segment.Record{T: segment.TypeUpdate, OldKind: "O", Old: tv("1", from), New: tv("1", to)})
	}
	for _, tc := range []struct {
		name    string
		changes []testChange
		want    []string
	}{
		{"changed back", []testChange{upd("1.0", "2"), upd("2", "1.0")}, []string{"a=1,n=1.0", "UPDATE affected 0 rows"}},
		{"deleted", []testChange{ch(segment.Record{T: segment.TypeDelete, OldKind: "O", Old: tv("1", "1.0")})}, []string{"a=1,n=1.0", "DELETE affected 0 rows"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := target.CreateDB(t)
			target.Exec(t, db, "CREATE TABLE fulltab(a int, n numeric); ALTER TABLE fulltab REPLICA IDENTITY FULL; INSERT INTO fulltab VALUES (1, 1.00), (2, 5)")
			r := testSegment(t, []testTx{
				{[]testChange{ch(segment.Record{T: segment.TypeDelete, OldKind: "O", Old: tv("2", "5")})}},
				{tc.changes},
			})
			failsOneByOne(t, db, r, append([]string{"0/3000200", "public.fulltab"}, tc.want...)...)
		})
	}
}

// failsOneByOne replays r into db: a set-based statement must fail, the
// batch be applied again one change at a time (one fallback), and the
// ReplayError it ends with name every want.
func failsOneByOne(t *testing.T, db string, r *segment.Reader, want ...string) {
	t.Helper()
	ctx := context.Background()
	p := &replayer{conn: target.Connect(t, db), target: Target{Latest: true}}
	err := replayAll(ctx, p, r)
	var re *ReplayError
	if !errors.As(err, &re) {
		t.Fatalf("replay: %v", err)
	}
	if p.netFallbacks != 1 {
		t.Errorf("%d fallbacks to one by one, want 1", p.netFallbacks)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}

// Inserts alone are not matched by key in the reducer: an insert of a
// key inserted earlier in the batch fails on the target's primary key,
// and the batch applied one by one names that row, as per-row replay
// does.
func TestRepeatedInsertInABatchNamesTheRow(t *testing.T) {
	db := target.CreateDB(t)
	target.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, v text)")
	items := &segment.Relation{OID: 16400, Schema: "public", Name: "items", ReplicaIdentity: "d", Columns: []segment.Column{
		{Name: "id", Type: "integer", Key: true}, {Name: "v", Type: "text"}}}
	ins := func(id, v string) testChange {
		return testChange{items, segment.Record{T: segment.TypeInsert, RelOID: items.OID, New: tv(id, v)}}
	}
	r := testSegment(t, []testTx{{[]testChange{ins("1", "one"), ins("2", "two")}}, {[]testChange{ins("2", "again")}}})
	failsOneByOne(t, db, r, "public.items", "id=2", "duplicate key")
}

// Random inserts, updates (some leaving a TOAST column unchanged, some
// changing the key) and deletes over a few keys, in many transactions:
// set-based replay leaves the target as applying them one by one does.
func TestSetBasedEqualsOneByOne(t *testing.T) {
	ctx := context.Background()
	rel := &segment.Relation{OID: 16400, Schema: "public", Name: "t", ReplicaIdentity: "d", Columns: []segment.Column{
		{Name: "id", Type: "integer", Key: true}, {Name: "a", Type: "text"}, {Name: "b", Type: "text"}}}
	for seed := range 3 {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		present := map[int]bool{}
		for k := 1; k <= 20; k++ {
			present[k] = true
		}
		var txs []testTx
		for range 80 {
			var tx testTx
			for range 1 + rng.IntN(8) {
				k := 1 + rng.IntN(30)
				val := func() string { return fmt.Sprintf("v%d", rng.IntN(1000)) }
				var rec segment.Record
				switch {
				case !present[k]:
					rec = segment.Record{T: segment.TypeInsert, New: tv(fmt.Sprint(k), val(), val())}
					present[k] = true
				case rng.IntN(4) == 0:
					rec = segment.Record{T: segment.TypeDelete, OldKind: "K", Old: tv(fmt.Sprint(k), "-", "-")}
					delete(present, k)
				case rng.IntN(12) == 0:
					to := 100 + rng.IntN(1000)
					if present[to] {
						continue
					}
					rec = segment.Record{T: segment.TypeUpdate, OldKind: "K", Old: tv(fmt.Sprint(k), "-", "-"), New: tv(fmt.Sprint(to), val(), val())}
					delete(present, k)
					present[to] = true
				default:
					rec = segment.Record{T: segment.TypeUpdate, New: tv(fmt.Sprint(k), val(), val())}
					if rng.IntN(2) == 0 {
						rec.New[2] = segment.Value{Kind: segment.Unchanged}
					}
					if rng.IntN(5) == 0 {
						rec.New[1] = segment.Value{Kind: segment.Null}
					}
				}
				rec.RelOID = rel.OID
				tx.changes = append(tx.changes, testChange{rel, rec})
			}
			txs = append(txs, tx)
		}
		var got [2]string
		var net int64
		for i, perRow := range []bool{true, false} {
			db := target.CreateDB(t)
			target.Exec(t, db, "CREATE TABLE t(id int PRIMARY KEY, a text, b text); INSERT INTO t SELECT g, 'a' || g, 'b' || g FROM generate_series(1, 20) g")
			p := &replayer{conn: target.Connect(t, db), target: Target{Latest: true}, perRow: perRow}
			err := replayAll(ctx, p, testSegment(t, txs))
			if err != nil {
				t.Fatalf("seed %d, one by one %v: %v", seed, perRow, err)
			}
			if !perRow {
				net = p.netRows
				if p.netFallbacks != 0 {
					t.Errorf("seed %d: %d fallbacks", seed, p.netFallbacks)
				}
			}
			got[i] = pgtest.QueryValue[string](t, target, db, "SELECT string_agg(format('%s=%s,%s', id, a, b), ' ' ORDER BY id) FROM t")
		}
		if got[0] != got[1] {
			t.Errorf("seed %d: set-based replay differs from one by one\none by one: %s\nset-based:  %s", seed, got[0], got[1])
		}
		if net == 0 {
			t.Errorf("seed %d: nothing applied set-based", seed)
		}
	}
}

// The same for REPLICA IDENTITY FULL tables, rows named by all their
// values: random inserts, updates (some leaving a TOAST column unchanged)
// and deletes over few distinct values, so that the target holds
// duplicates, some of them changed in one batch; NULLs; and, in a second
// table, a unique index whose column some updates change (those go one
// by one). Set-based replay leaves the target as one by one does, also
// when the values of every row hash alike.
func TestSetBasedEqualsOneByOneFull(t *testing.T) {
	ctx := context.Background()
	full := func(oid uint32, name string) *segment.Relation {
		return &segment.Relation{OID: oid, Schema: "public", Name: name, ReplicaIdentity: "f", Columns: []segment.Column{
			{Name: "a", Type: "integer", Key: true}, {Name: "b", Type: "text", Key: true}, {Name: "c", Type: "text", Key: true}}}
	}
	dup, uniq := full(16400, "dup"), full(16401, "uniq")
	t.Cleanup(func() { fullHash = hashValues })
	for seed := range 6 {
		// The last seeds index every row under one hash: each hit is
		// another row's, and must be found out.
		collide := seed >= 4
		fullHash = hashValues
		if collide {
			fullHash = func(_, _ []segment.Value) uint64 { return 7 }
		}
		rng := rand.New(rand.NewPCG(uint64(seed), 11))
		pick := func(vals ...string) string { return vals[rng.IntN(len(vals))] }
		// rows: each table's rows as the source holds them
		rows := map[*segment.Relation][][]string{}
		for a := range 12 {
			rows[dup] = append(rows[dup], []string{fmt.Sprint(a % 4), pick("x", "y", "-"), pick("p", "-")})
			rows[uniq] = append(rows[uniq], []string{fmt.Sprint(a), pick("x", "y", "-"), "p"})
		}
		var setup []string
		for _, rel := range []*segment.Relation{dup, uniq} {
			for _, r := range rows[rel] {
				var vs []string
				for _, v := range r {
					if v == "-" {
						vs = append(vs, "NULL")
					} else {
						vs = append(vs, "'"+v+"'")
					}
				}
				setup = append(setup, fmt.Sprintf("INSERT INTO %s VALUES (%s)", rel.Name, strings.Join(vs, ", ")))
			}
		}
		nextA := 100
		var txs []testTx
		for range 60 {
			var tx testTx
			for range 1 + rng.IntN(8) {
				rel := dup
				if rng.IntN(3) == 0 {
					rel = uniq
				}
				rs := rows[rel]
				var rec segment.Record
				switch n := rng.IntN(10); {
				case n < 2 || len(rs) == 0:
					r := []string{fmt.Sprint(rng.IntN(4)), pick("x", "y", "-"), pick("p", "q")}
					if rel == uniq {
						r[0] = fmt.Sprint(nextA)
						nextA++
					}
					rec = segment.Record{T: segment.TypeInsert, New: tv(r...)}
					rows[rel] = append(rs, r)
				case n < 4:
					i := rng.IntN(len(rs))
					rec = segment.Record{T: segment.TypeDelete, OldKind: "O", Old: tv(rs[i]...)}
					rows[rel] = append(rs[:i:i], rs[i+1:]...)
				default:
					i := rng.IntN(len(rs))
					r := slices.Clone(rs[i])
					r[1] = pick("x", "y", "z", "-")
					if rel == uniq && rng.IntN(4) == 0 {
						r[0] = fmt.Sprint(nextA)
						nextA++
					} else if rel == dup && rng.IntN(3) == 0 {
						r[0] = fmt.Sprint(rng.IntN(4))
					}
					rec = segment.Record{T: segment.TypeUpdate, OldKind: "O", Old: tv(rs[i]...), New: tv(r...)}
					if rng.IntN(3) == 0 {
						rec.New[2] = segment.Value{Kind: segment.Unchanged} // c: unchanged TOAST
					} else {
						r[2] = pick("p", "q", "-")
						rec.New[2] = tv(r[2])[0]
					}
					rs[i] = r
				}
				rec.RelOID = rel.OID
				tx.changes = append(tx.changes, testChange{rel, rec})
			}
			txs = append(txs, tx)
		}
		var got [2]string
		var net, fallbacks int64
		for i, perRow := range []bool{true, false} {
			db := target.CreateDB(t)
			target.Exec(t, db, "CREATE TABLE dup(a int, b text, c text); CREATE INDEX ON dup(a); CREATE TABLE uniq(a int UNIQUE, b text, c text); "+strings.Join(setup, "; "))
			p := &replayer{conn: target.Connect(t, db), target: Target{Latest: true}, perRow: perRow}
			err := replayAll(ctx, p, testSegment(t, txs))
			if err != nil {
				t.Fatalf("seed %d, one by one %v: %v", seed, perRow, err)
			}
			if !perRow {
				net, fallbacks = p.netRows, p.netFallbacks
			}
			got[i] = pgtest.QueryValue[string](t, target, db, `SELECT concat_ws(' | ',
				(SELECT string_agg(x, ' ' ORDER BY x COLLATE "C") FROM (SELECT format('%s,%s,%s', a, coalesce(b, '-'), coalesce(c, '-')) FROM dup) r(x)),
				(SELECT string_agg(x, ' ' ORDER BY x COLLATE "C") FROM (SELECT format('%s,%s,%s', a, coalesce(b, '-'), coalesce(c, '-')) FROM uniq) r(x)),
				(SELECT string_agg(relname || '=' || relreplident::text, ',' ORDER BY relname) FROM pg_class WHERE relname IN ('dup', 'uniq')))`)
		}
		// What the source holds, and the replica identity it had.
		var want []string
		for _, rel := range []*segment.Relation{dup, uniq} {
			var rs []string
			for _, r := range rows[rel] {
				rs = append(rs, strings.Join(r, ","))
			}
			slices.Sort(rs)
			want = append(want, strings.Join(rs, " "))
		}
		want = append(want, "dup=f,uniq=f")
		if w := strings.Join(want, " | "); got[0] != w || got[1] != w {
			t.Errorf("seed %d: replay differs from the source\nsource:      %s\none by one:  %s\nset-based:   %s", seed, w, got[0], got[1])
		}
		if (net == 0 && !collide) || fallbacks != 0 {
			t.Errorf("seed %d: %d changes set-based, %d fallbacks; want some and none", seed, net, fallbacks)
		}
	}
}

// Replay decodes ahead of applying: each change is applied with its
// relation as the segment described it at that change, not as a later
// relation record (here one adding a column) describes it.
func TestReadAheadKeepsEachChangesRelation(t *testing.T) {
	ctx := context.Background()
	db := target.CreateDB(t)
	target.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, v text, w text)")
	before := &segment.Relation{OID: 16400, Schema: "public", Name: "items", ReplicaIdentity: "d", Columns: []segment.Column{
		{Name: "id", Type: "integer", Key: true}, {Name: "v", Type: "text"}}}
	after := &segment.Relation{OID: 16400, Schema: "public", Name: "items", ReplicaIdentity: "d", Columns: []segment.Column{
		{Name: "id", Type: "integer", Key: true}, {Name: "w", Type: "text"}, {Name: "v", Type: "text"}}}
	ins := func(rel *segment.Relation, vals ...string) testChange {
		return testChange{rel, segment.Record{T: segment.TypeInsert, RelOID: rel.OID, New: tv(vals...)}}
	}
	upd := func(rel *segment.Relation, vals ...string) testChange {
		return testChange{rel, segment.Record{T: segment.TypeUpdate, RelOID: rel.OID, New: tv(vals...)}}
	}
	p := &replayer{conn: target.Connect(t, db), target: Target{Latest: true}}
	err := p.segment(ctx, testSegment(t, []testTx{
		{[]testChange{ins(before, "1", "v1"), upd(before, "1", "v1b")}},
		{[]testChange{ins(after, "2", "w2", "v2"), upd(after, "1", "w1", "v1c")}},
	}))
	if err == nil {
		err = p.flush(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	got := pgtest.QueryValue[string](t, target, db, "SELECT string_agg(format('%s:%s:%s', id, v, w), ' ' ORDER BY id) FROM items")
	if want := "1:v1c:w1 2:v2:w2"; got != want {
		t.Errorf("items holds %q, want %q", got, want)
	}
}

// A batch's statements (its COPY, its UPDATEs) run on while the next
// batch is read, and the commit waits for them: the target then holds
// them, counted.
func TestBatchStatementsOverlapTheNextRead(t *testing.T) {
	for _, tc := range []struct {
		name   string
		op     string
		copied int64
		want   string
	}{
		{"COPY of inserts", segment.TypeInsert, 3, "3 rows, 3 new"},
		{"UPDATEs", segment.TypeUpdate, 0, "3 rows, 3 new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			db := target.CreateDB(t)
			target.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, v text)")
			if tc.op == segment.TypeUpdate {
				target.Exec(t, db, "INSERT INTO items SELECT g, 'old' FROM generate_series(1, 3) g")
			}
			items := &segment.Relation{OID: 16400, Schema: "public", Name: "items", ReplicaIdentity: "d", Columns: []segment.Column{
				{Name: "id", Type: "integer", Key: true}, {Name: "v", Type: "text"}}}
			var changes []testChange
			for i := 1; i <= 3; i++ {
				changes = append(changes, testChange{items, segment.Record{T: tc.op, RelOID: items.OID, New: tv(fmt.Sprint(i), "new")}})
			}
			p := &replayer{conn: target.Connect(t, db), target: Target{Latest: true}}
			if err := p.segment(ctx, testSegment(t, []testTx{{changes}})); err != nil {
				t.Fatal(err)
			}
			if err := p.applyNet(ctx); err != nil {
				t.Fatal(err)
			}
			if p.pendingNet == nil {
				t.Fatal("the batch's statements did not run on: nothing pending after applyNet")
			}
			if err := p.flush(ctx); err != nil {
				t.Fatal(err)
			}
			if p.pendingNet != nil || p.copied != tc.copied || p.netRows != 3 {
				t.Fatalf("after the commit: pending %v, %d rows copied, %d set-based; want none pending, %d and 3", p.pendingNet != nil, p.copied, p.netRows, tc.copied)
			}
			got := pgtest.QueryValue[string](t, target, db, "SELECT count(*) || ' rows, ' || count(*) FILTER (WHERE v = 'new') || ' new' FROM items")
			if got != tc.want {
				t.Fatalf("the target holds %s, want %s", got, tc.want)
			}
		})
	}
}

// A long transaction's changes are applied in batches that start small
// (the target starts on the first after a few milliseconds) and grow, and
// wide rows cut a batch at netMaxBytes of values rather than at its
// count of changes (memory stays bounded). The target holds every row.
func TestBatchesGrowAndStayWithinBytes(t *testing.T) {
	ctx := context.Background()
	items := &segment.Relation{OID: 16400, Schema: "public", Name: "items", ReplicaIdentity: "d", Columns: []segment.Column{
		{Name: "id", Type: "integer", Key: true}, {Name: "v", Type: "text"}}}
	for _, tc := range []struct {
		name    string
		rows    int
		width   int
		batches int64
	}{
		{"narrow", netFirst * 7, 10, 3},           // netFirst, twice, four times
		{"wide", 40, netMaxBytes / 32 * 3 / 2, 2}, // 22 rows, then 18
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := target.CreateDB(t)
			target.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, v text)")
			var changes []testChange
			for i := 1; i <= tc.rows; i++ {
				v := strings.Repeat("x", tc.width) + fmt.Sprint(i)
				changes = append(changes, testChange{items, segment.Record{T: segment.TypeInsert, RelOID: items.OID, New: tv(fmt.Sprint(i), v)}})
			}
			p := &replayer{conn: target.Connect(t, db), target: Target{Latest: true}}
			err := replayAll(ctx, p, testSegment(t, []testTx{{changes}}))
			if err != nil {
				t.Fatal(err)
			}
			if p.netBatches != tc.batches || p.netRows != int64(tc.rows) {
				t.Errorf("%d rows applied set-based in %d batches; want %d in %d", p.netRows, p.netBatches, tc.rows, tc.batches)
			}
			got := pgtest.QueryValue[string](t, target, db, "SELECT count(*) || ' rows, ' || count(*) FILTER (WHERE ltrim(v, 'x')::int = id AND length(v) > $1) || ' right' FROM items", tc.width)
			if want := fmt.Sprintf("%d rows, %d right", tc.rows, tc.rows); got != want {
				t.Fatalf("the target holds %s, want %s", got, want)
			}
		})
	}
}

// Decoding ahead stops at decodeAheadBytes of values, not only at a count
// of records: wide rows do not pile up in memory while the target works.
func TestDecodeAheadIsBoundedInBytes(t *testing.T) {
	items := &segment.Relation{OID: 16400, Schema: "public", Name: "items", ReplicaIdentity: "d", Columns: []segment.Column{
		{Name: "id", Type: "integer", Key: true}, {Name: "v", Type: "text"}}}
	const width = 2 << 20 // a batch of one record each: decodeAheadBatches of them are above the bound
	var changes []testChange
	for i := 1; i <= 30; i++ {
		changes = append(changes, testChange{items, segment.Record{T: segment.TypeInsert, RelOID: items.OID, New: tv(fmt.Sprint(i), strings.Repeat("x", width))}})
	}
	stop := make(chan struct{})
	a := decodeAhead(testSegment(t, []testTx{{changes}}), stop)
	defer func() {
		close(stop)
		for range a.ch {
		}
	}()
	// Wait until the decoder stops, nothing being applied.
	for last := int64(-1); a.used.Load() != last; time.Sleep(200 * time.Millisecond) {
		last = a.used.Load()
	}
	var recs int
	for range len(a.ch) {
		recs += len((<-a.ch).recs)
	}
	if recs > decodeAheadBytes/width+2 {
		t.Fatalf("%d records of %d KiB decoded ahead; want at most about %d (decodeAheadBytes)", recs, width>>10, decodeAheadBytes/width)
	}
}

// A batch that follows its predecessor directly runs in the savepoint
// the predecessor's goroutine opened; when anything ran in between (here
// a TRUNCATE), the next batch opens a savepoint of its own. Either way a
// batch that fails and is applied again one by one rolls back its own
// statements only.
func TestFailedBatchKeepsWhatRanBeforeIt(t *testing.T) {
	ctx := context.Background()
	items := &segment.Relation{OID: 16400, Schema: "public", Name: "items", ReplicaIdentity: "d", Columns: []segment.Column{
		{Name: "id", Type: "integer", Key: true}, {Name: "v", Type: "text"}}}
	other := &segment.Relation{OID: 16401, Schema: "public", Name: "other", ReplicaIdentity: "d", Columns: []segment.Column{
		{Name: "id", Type: "integer", Key: true}}}
	ins := func(id int) testChange {
		return testChange{items, segment.Record{T: segment.TypeInsert, RelOID: items.OID, New: tv(fmt.Sprint(id), fmt.Sprint("v", id))}}
	}
	trunc := testChange{other, segment.Record{T: segment.TypeTruncate, RelOIDs: []uint32{other.OID}}}
	// The first batch: netFirst rows; then what runs between; then the
	// second batch, whose COPY fails.
	first := testTx{}
	for id := 1; id <= netFirst; id++ {
		first.changes = append(first.changes, ins(id))
	}
	second := testTx{[]testChange{ins(0), ins(-1), ins(-2)}}
	for _, tc := range []struct {
		name    string
		between []testTx
		want    string
	}{
		{"directly after", nil, fmt.Sprintf("%d / 2", netFirst+3)},
		{"after a TRUNCATE", []testTx{{[]testChange{trunc}}}, fmt.Sprintf("%d / 0", netFirst+3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := target.CreateDB(t)
			target.Exec(t, db, `CREATE TABLE items(id int PRIMARY KEY, v text);
				CREATE TABLE other(id int PRIMARY KEY);
				INSERT INTO other VALUES (1), (2);
				`+refuseZeroWithOthers)
			p := &replayer{conn: target.Connect(t, db), target: Target{Latest: true}}
			txs := append(append([]testTx{first}, tc.between...), second)
			err := replayAll(ctx, p, testSegment(t, txs))
			if err != nil {
				t.Fatal(err)
			}
			if p.netBatches != 1 || p.netFallbacks != 1 {
				t.Errorf("%d batches set-based, %d applied one by one; want 1 and 1", p.netBatches, p.netFallbacks)
			}
			got := pgtest.QueryValue[string](t, target, db, "SELECT (SELECT count(*) FROM items) || ' / ' || (SELECT count(*) FROM other)")
			if got != tc.want {
				t.Fatalf("rows of items / of other: %s, want %s", got, tc.want)
			}
		})
	}
}

// refuseZeroWithOthers makes the target refuse a statement inserting
// several rows into items when one has id 0: a set-based batch's COPY
// fails, its rows one by one do not.
const refuseZeroWithOthers = `CREATE FUNCTION few() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF (SELECT count(*) > 1 AND bool_or(id = 0) FROM inserted) THEN RAISE EXCEPTION 'id 0 with others'; END IF;
		RETURN NULL;
	END $$;
	CREATE TRIGGER few AFTER INSERT ON items REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION few()`

// A batch applied one by one after its set-based statement failed goes
// before what replay queued after it: here a key change of a row the
// batch inserts, queued while the batch's COPY ran (what it asks the
// target is known from a key change before), and followed by changes
// buffered for the next batch (settling the failed batch there queued its
// rows after the key change).
func TestFailedBatchGoesBeforeWhatFollows(t *testing.T) {
	ctx := context.Background()
	items := &segment.Relation{OID: 16400, Schema: "public", Name: "items", ReplicaIdentity: "d", Columns: []segment.Column{
		{Name: "id", Type: "integer", Key: true}, {Name: "v", Type: "text"}}}
	ch := func(rec segment.Record) testChange { rec.RelOID = items.OID; return testChange{items, rec} }
	ins := func(id int) testChange {
		return ch(segment.Record{T: segment.TypeInsert, New: tv(fmt.Sprint(id), "v")})
	}
	keyChange := func(from, to int) testChange {
		return ch(segment.Record{T: segment.TypeUpdate, OldKind: "K", Old: tv(fmt.Sprint(from), "-"), New: tv(fmt.Sprint(to), "w")})
	}
	for _, tc := range []struct {
		name  string
		after []testChange
		want  string
	}{
		{"alone", []testChange{keyChange(0, 100)}, "-1 51 100"},
		{"then a batch", []testChange{keyChange(0, 100), ins(5)}, "-1 5 51 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := target.CreateDB(t)
			target.Exec(t, db, `CREATE TABLE items(id int PRIMARY KEY, v text);
				`+refuseZeroWithOthers)
			p := &replayer{conn: target.Connect(t, db), target: Target{Latest: true}}
			err := replayAll(ctx, p, testSegment(t, []testTx{{[]testChange{ins(50), keyChange(50, 51)}}, {[]testChange{ins(0), ins(-1)}}, {tc.after}}))
			if err != nil {
				t.Fatal(err)
			}
			if p.netFallbacks != 1 {
				t.Errorf("%d batches applied one by one; want 1", p.netFallbacks)
			}
			if got := pgtest.QueryValue[string](t, target, db, "SELECT string_agg(id::text, ' ' ORDER BY id) FROM items"); got != tc.want {
				t.Errorf("items: %s, want %s", got, tc.want)
			}
		})
	}
}
