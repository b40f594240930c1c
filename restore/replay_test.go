package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/segment"
	"github.com/btfu/btfu/store"
)

func TestCopyEscape(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "",
		"plain":              "plain",
		`back\slash`:         `back\\slash`,
		"tab\there":          `tab\there`,
		"line\nbreak\r\n":    `line\nbreak\r\n`,
		`\N`:                 `\\N`,
		"ünïcødé\t\\\n":      `ünïcødé\t\\\n`,
		`{"a": "b\"c"}`:      `{"a": "b\\"c"}`,
		"{1,2}\t{NULL,\"\"}": `{1,2}\t{NULL,""}`,
	} {
		var b bytes.Buffer
		copyEscape(&b, in)
		if b.String() != want {
			t.Errorf("copyEscape(%q) = %q, want %q", in, b.String(), want)
		}
	}
}

// copyPlain's eight-bytes-at-a-time test agrees with a byte loop for
// every byte at every place in a word and across words.
func TestCopyPlain(t *testing.T) {
	slow := func(s string) int {
		for i := 0; i < len(s); i++ {
			if s[i] == '\\' || s[i] < 0x20 {
				return i
			}
		}
		return len(s)
	}
	for c := 0; c < 256; c++ {
		for n := 0; n <= 24; n++ {
			for at := 0; at <= n; at++ {
				b := bytes.Repeat([]byte("a"), n)
				if at < n {
					b[at] = byte(c)
				}
				if got, want := copyPlain(string(b)), slow(string(b)); got != want {
					t.Fatalf("copyPlain(%q) = %d, want %d", b, got, want)
				}
			}
		}
	}
}

// Runs of inserts go through COPY, short runs through INSERT, and both
// interleave with updates, deletes and other tables in source order.
func TestInsertRunsKeepOrderAndValues(t *testing.T) {
	e := capturing(t)
	tricky := `E'tab\there', E'line\nbreak\r\n', E'back\\slash', '\N', '', 'null', 'ünïcødé', E'\\.', NULL`
	source.Exec(t, e.db, `
		INSERT INTO items(name, qty) VALUES ('short1', 1), ('short2', 2);
		INSERT INTO items(name, qty) SELECT (ARRAY[`+tricky+`])[1 + g % 9], g FROM generate_series(1, 100) g;
		UPDATE items SET qty = -qty WHERE id % 10 = 0;
		INSERT INTO items(name) SELECT 'only name ' || g FROM generate_series(1, 20) g;
		INSERT INTO tags SELECT g, (ARRAY[`+tricky+`])[1 + g % 9] FROM generate_series(1, 30) g;
		DELETE FROM items WHERE id % 7 = 0;
		INSERT INTO toasty SELECT g, repeat(md5(g::text), 200), g FROM generate_series(1, 12) g;
		INSERT INTO items(name, qty) VALUES ('after', 1)`)
	source.Exec(t, e.db, `BEGIN; INSERT INTO items(name, qty) SELECT 'tx2-' || g, g FROM generate_series(1, 5) g; COMMIT`)
	source.Exec(t, e.db, `INSERT INTO items(name, qty) SELECT 'tx3-' || g, g FROM generate_series(1, 5) g`)
	m := e.mark(t, "runs")
	e.waitStored(t, m)
	db, sum, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	got := contentHash(t, target, db)
	for _, tbl := range tables {
		if got[tbl] != m.hash[tbl] {
			t.Errorf("table %s differs from the source", tbl)
		}
	}
	if sum.CopiedRows == 0 || sum.CopiedRows >= sum.Rows {
		t.Errorf("%d of %d rows copied; want runs copied and short runs inserted", sum.CopiedRows, sum.Rows)
	}
	if strings.Contains(got["items"], "empty") {
		t.Error("items restored empty")
	}

	// The same with parallel pg_restore.
	plan, err := MakePlan(context.Background(), e.meta, e.id, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	db2 := target.CreateDB(t)
	if _, err := Run(context.Background(), e.meta, e.arts, e.id, plan, Options{TargetDSN: target.DSN(db2), Jobs: 2, TempDir: t.TempDir()}); err != nil {
		t.Fatalf("restore with --jobs 2: %v", err)
	}
	if got2 := contentHash(t, target, db2); fmt.Sprint(got2) != fmt.Sprint(got) {
		t.Error("restore with --jobs 2 differs")
	}
}

// An UPDATE or DELETE that matches no row on the target means the target
// diverged from the source: replay stops and names the transaction, the
// table and the key instead of going on silently (DESIGN 4.5).
func TestChangeMatchingNoRowStopsWithLSNTableAndKey(t *testing.T) {
	ctx := context.Background()
	db := target.CreateDB(t)
	target.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'one')")
	rel := &segment.Relation{OID: 16400, Schema: "public", Name: "items", ReplicaIdentity: "d", Columns: []segment.Column{
		{Name: "id", Type: "integer", Key: true}, {Name: "name", Type: "text"}}}
	for _, tc := range []struct {
		name string
		rec  segment.Record
	}{
		{"update", segment.Record{T: segment.TypeUpdate, RelOID: rel.OID, New: []segment.Value{segment.TextValue("42"), segment.TextValue("x")}}},
		{"delete", segment.Record{T: segment.TypeDelete, RelOID: rel.OID, OldKind: "K", Old: []segment.Value{segment.TextValue("42"), {Kind: segment.Null}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := segment.NewWriter(&buf, segment.Header{Format: 1, Source: "app", ChainID: 1}, zstd.SpeedFastest)
			if err != nil {
				t.Fatal(err)
			}
			at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
			ok := func(err error) {
				if err != nil {
					t.Fatal(err)
				}
			}
			ok(w.BeginTx(segment.TxInfo{XID: 7, CommitLSN: 0x3000060, EndLSN: 0x3000090, CommitTime: at, Changes: 1}))
			rec := tc.rec
			ok(w.WriteChange(&rec, rel))
			ok(w.CommitTx())
			_, err = w.Close()
			ok(err)
			r, err := segment.NewReader(&buf)
			ok(err)
			defer r.Close()
			conn := target.Connect(t, db)
			p := &replayer{conn: conn, target: Target{Latest: true}}
			err = p.segment(ctx, r)
			if err == nil {
				err = p.flush(ctx)
			}
			var re *ReplayError
			if !errors.As(err, &re) {
				t.Fatalf("replay of a change matching no row: %v", err)
			}
			for _, want := range []string{"0/3000060", "public.items", "id=42", "affected 0 rows, want exactly 1"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
		})
	}
}

// Transactions running while a later base backup is taken commit on both
// sides of its consistent point; a restore from that base applies each
// exactly once (DESIGN 1.3).
func TestTransactionsStraddlingABaseBackupAreAppliedOnce(t *testing.T) {
	e := capturing(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 4)
	for w := range 3 {
		go func() {
			conn := source.Connect(t, e.db)
			for i := 0; ctx.Err() == nil; i++ {
				// Long transactions with a change before and after a pause
				// straddle whatever consistent point falls meanwhile.
				_, err := conn.Exec(ctx, fmt.Sprintf(`BEGIN;
					INSERT INTO items(name, qty) VALUES ('w%d-%d-a', %d);
					UPDATE items SET qty = qty + 1 WHERE id = (SELECT max(id) FROM items);
					SELECT pg_sleep(0.05);
					INSERT INTO items(name, qty) VALUES ('w%d-%d-b', %d);
					DELETE FROM items WHERE id = (SELECT min(id) FROM items WHERE name LIKE 'w%d-%%-a');
					COMMIT`, w, i, i, w, i, i, w))
				if err != nil && ctx.Err() == nil {
					errs <- err
					return
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	b, err := e.w.BackupNow(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-errs:
		t.Fatal(err)
	case <-time.After(200 * time.Millisecond):
	}
	m := e.mark(t, "after the second base")
	e.waitStored(t, m)
	plan, err := MakePlan(context.Background(), e.meta, e.id, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Base.ID != b.ID {
		t.Fatalf("plan uses base %s, want the one taken under load (%s)", plan.Base.ArtifactKey, b.ArtifactKey)
	}
	db := target.CreateDB(t)
	if _, err := Run(context.Background(), e.meta, e.arts, e.id, plan, Options{TargetDSN: target.DSN(db)}); err != nil {
		t.Fatal(err)
	}
	got := contentHash(t, target, db)
	if got["items"] != m.hash["items"] {
		t.Fatal("items differs from the source: a transaction around the base's consistent point was lost or applied twice")
	}
}

func TestCheckTarget(t *testing.T) {
	ctx := context.Background()
	srcDB := source.CreateDB(t)
	src := store.Source{Database: srcDB, SystemIdentifier: pgtest.QueryValue[string](t, source, srcDB, "SELECT system_identifier::text FROM pg_control_system()")}
	empty := target.CreateDB(t)
	ti, err := CheckTarget(ctx, target.DSN(empty), src)
	if err != nil || ti.Database != empty || ti.Major < 13 || ti.Tables != 0 {
		t.Fatalf("empty target: %+v %v", ti, err)
	}
	if _, err := CheckTarget(ctx, source.DSN(srcDB), src); err == nil || !strings.Contains(err.Error(), "never restores into the source") {
		t.Fatalf("the source as target: %v", err)
	}
	target.Exec(t, empty, "CREATE TABLE x(i int)")
	if _, err := CheckTarget(ctx, target.DSN(empty), src); err == nil || !strings.Contains(err.Error(), "not empty (1 tables)") {
		t.Fatalf("non-empty target: %v", err)
	}
	if _, err := CheckTarget(ctx, target.DSNFor("nobody", "s3cret-pw", empty), src); err == nil || strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("unreachable target: %v", err)
	}
}

// A statement that the target cannot even prepare (here: its table is
// missing) fails the first statement of its pipelined batch; the error
// still names the statement that failed, with its transaction, table,
// operation and key, not the batch's first.
func TestPrepareErrorNamesTheFailingStatement(t *testing.T) {
	ctx := context.Background()
	db := target.CreateDB(t)
	target.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'one')")
	items := &segment.Relation{OID: 16400, Schema: "public", Name: "items", ReplicaIdentity: "d", Columns: []segment.Column{
		{Name: "id", Type: "integer", Key: true}, {Name: "name", Type: "text"}}}
	gone := &segment.Relation{OID: 16401, Schema: "public", Name: "gone", ReplicaIdentity: "f", Columns: []segment.Column{
		{Name: "a", Type: "integer"}, {Name: "b", Type: "text"}}}
	var buf bytes.Buffer
	w, err := segment.NewWriter(&buf, segment.Header{Format: 1, Source: "app", ChainID: 1}, zstd.SpeedFastest)
	if err != nil {
		t.Fatal(err)
	}
	ok := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ok(w.BeginTx(segment.TxInfo{XID: 7, CommitLSN: 0x3000060, EndLSN: 0x3000090, CommitTime: at, Changes: 1}))
	ok(w.WriteChange(&segment.Record{T: segment.TypeUpdate, RelOID: items.OID, New: []segment.Value{segment.TextValue("1"), segment.TextValue("uno")}}, items))
	ok(w.CommitTx())
	ok(w.BeginTx(segment.TxInfo{XID: 8, CommitLSN: 0x3000160, EndLSN: 0x3000190, CommitTime: at, Changes: 1}))
	ok(w.WriteChange(&segment.Record{T: segment.TypeDelete, RelOID: gone.OID, OldKind: "O",
		Old: []segment.Value{segment.TextValue("5"), segment.TextValue("five")}}, gone))
	ok(w.CommitTx())
	_, err = w.Close()
	ok(err)
	r, err := segment.NewReader(&buf)
	ok(err)
	defer r.Close()
	p := &replayer{conn: target.Connect(t, db), target: Target{Latest: true}}
	err = p.segment(ctx, r)
	if err == nil {
		err = p.flush(ctx)
	}
	var re *ReplayError
	if !errors.As(err, &re) {
		t.Fatalf("replay of a change on a missing table: %v", err)
	}
	for _, want := range []string{"0/3000160", "public.gone", "DELETE", "a=5,b=five", `relation "public.gone" does not exist`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

// A row that COPY cannot store (here: its key is taken on the target) is
// named with its own transaction and key, not only the run's first.
func TestCopyErrorNamesTheRow(t *testing.T) {
	ctx := context.Background()
	db := target.CreateDB(t)
	target.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, name text); INSERT INTO items VALUES (15, 'already there')")
	rel := &segment.Relation{OID: 16400, Schema: "public", Name: "items", ReplicaIdentity: "d", Columns: []segment.Column{
		{Name: "id", Type: "integer", Key: true}, {Name: "name", Type: "text"}}}
	var buf bytes.Buffer
	w, err := segment.NewWriter(&buf, segment.Header{Format: 1, Source: "app", ChainID: 1}, zstd.SpeedFastest)
	if err != nil {
		t.Fatal(err)
	}
	ok := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for tx, ids := range [][]int{{1, 10}, {11, 20}} {
		lsn := segment.LSN(0x3000000 + 0x100*(tx+1))
		ok(w.BeginTx(segment.TxInfo{XID: uint32(7 + tx), CommitLSN: lsn, EndLSN: lsn + 0x30, CommitTime: at, Changes: ids[1] - ids[0] + 1}))
		for id := ids[0]; id <= ids[1]; id++ {
			ok(w.WriteChange(&segment.Record{T: segment.TypeInsert, RelOID: rel.OID, New: []segment.Value{segment.TextValue(fmt.Sprint(id)), segment.TextValue("row")}}, rel))
		}
		ok(w.CommitTx())
	}
	_, err = w.Close()
	ok(err)
	r, err := segment.NewReader(&buf)
	ok(err)
	defer r.Close()
	p := &replayer{conn: target.Connect(t, db), target: Target{Latest: true}}
	err = p.segment(ctx, r)
	if err == nil {
		err = p.flush(ctx)
	}
	var re *ReplayError
	if !errors.As(err, &re) {
		t.Fatalf("replay of a row whose key is taken: %v", err)
	}
	for _, want := range []string{"0/3000200", "public.items", "id=15", "row 15 of a COPY of 20", "duplicate key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}
