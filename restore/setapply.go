package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/btfu/btfu/segment"
)

// Set-based apply (issue 14). Row changes of a table replay can prove
// order-free are buffered in the open target transaction, reduced to
// their net effect per key (netset.go), and applied per table with a few
// statements: DELETE … USING unnest(…), UPDATE … FROM unnest(…) per set
// of columns, COPY for inserts. Each statement must touch exactly as many
// rows as it names (the per-row exactly-one check, as a count); when one
// does not, or fails, the buffer is rolled back to a savepoint and applied
// again one change at a time, whose failure names the exact row,
// transaction, table, operation and key (ReplayError).
//
// Order between tables does not matter to the result: replay runs with
// session_replication_role = replica (foreign keys and ordinary triggers
// do not fire) and the trigger guard disables the others (triggers.go).
// Within a table it matters where another unique index or an exclusion
// constraint could see an intermediate state (a swap of unique values)
// and on partitioned tables and partitions (rows that move): those tables
// are applied one change at a time, as are key changes. A REPLICA
// IDENTITY FULL table's rows are named by all their values (netset.go);
// an update of a column in one of its unique indexes goes one by one, and
// so does a change to a row the batch made twice (duplicates). TRUNCATE,
// DDL and messages apply the buffer first, and so does the end of each
// target transaction (flush), so order across target transactions never
// changes and the restore stops exactly at its target.

const (
	// netMax bounds the changes buffered before they are applied, and
	// netMaxBytes their values' bytes (memory). A restore's first batch
	// holds netFirst changes, each next one twice the last up to netMax:
	// the target starts working after a few milliseconds, then waits on
	// fewer, larger batches.
	netFirst    = 2_000
	netMax      = 50_000
	netMaxBytes = 32 << 20
	// netChunk is the most rows one UPDATE or DELETE of a keyed table
	// names (a REPLICA IDENTITY FULL table's: a batch's). Small enough
	// that the planner, which sees the arrays' length in its first plans
	// of a statement, joins them to a large table through its key's
	// index rather than by reading the whole table; the chunks of a
	// table are sent pipelined.
	netChunk = 2_000
)

// netBuffer is the changes waiting for set-based apply.
type netBuffer struct {
	tables map[string]*netTable // by schema.name
	order  []*netTable
	// recs: every buffered change in source order, to apply them one by
	// one when a set-based statement fails
	recs []netRec
	// bytes: of the buffered changes' values
	bytes int
}

type netRec struct {
	begin *segment.Record // its transaction's begin (LSN for messages)
	rel   *segment.Relation
	rec   *segment.Record
}

// nextNetLimit is the size of the batch after one of limit changes (0:
// the first batch).
func nextNetLimit(limit int) int {
	return min(2*max(limit, netFirst), netMax)
}

// valueBytes is about what a change's values hold in memory.
func valueBytes(rec *segment.Record) int {
	n := 0
	for _, vals := range [2][]segment.Value{rec.Old, rec.New} {
		for _, v := range vals {
			n += len(v.Text) + 16
		}
	}
	return n
}

// errNetCount: a set-based statement touched another number of rows than
// it named.
var errNetCount = errors.New("set-based statement touched another number of rows")

// netChange buffers a row change for set-based apply, or applies it on
// its own when its table does not allow it; bytes is valueBytes of rec,
// as the decoder counted it.
func (p *replayer) netChange(ctx context.Context, rel *segment.Relation, rec *segment.Record, bytes int) error {
	name, ok, err := p.netAllowed(ctx, rel, rec)
	if err != nil {
		return err
	}
	if ok {
		t := p.net.tables[name]
		if t != nil && t.rel != rel && !sameColumns(t.rel, rel) {
			// The table's columns or replica identity changed without
			// DDL in between: what is buffered goes first.
			if err := p.applyNet(ctx); err != nil {
				return err
			}
			t = nil
		}
		fresh := t == nil
		if fresh {
			t = newNetTable(rel, &p.netPool)
			t.guard = p.netLast.guard
		}
		if err := t.add(rec); err == nil {
			if fresh {
				if p.net.tables == nil {
					p.net.tables = map[string]*netTable{}
				}
				p.net.tables[name] = t
				p.net.order = append(p.net.order, t)
			}
			if p.net.recs == nil {
				p.net.recs, p.spareRecs = p.spareRecs, nil
			}
			p.net.recs = append(p.net.recs, netRec{begin: p.cur, rel: rel, rec: rec})
			p.net.bytes += bytes
			if len(p.net.recs) >= max(p.netLimit, netFirst) || p.net.bytes >= netMaxBytes {
				p.netLimit = nextNetLimit(p.netLimit)
				return p.applyNet(ctx)
			}
			return nil
		}
	}
	// On its own, after what is buffered of its table.
	if p.net.tables[name] != nil {
		if err := p.applyNet(ctx); err != nil {
			return err
		}
	}
	return p.rowChange(ctx, rel, rec)
}

func sameColumns(a, b *segment.Relation) bool {
	if len(a.Columns) != len(b.Columns) || a.ReplicaIdentity != b.ReplicaIdentity {
		return false
	}
	for i := range a.Columns {
		if a.Columns[i] != b.Columns[i] {
			return false
		}
	}
	return true
}

// netSafeSQL tells whether a table's changes may be applied set-based: a
// plain table (not partitioned, not a partition) whose replica identity
// is its primary key or an index, with no other unique index nor
// exclusion constraint, whose intermediate states could collide.
const netSafeSQL = `SELECT c.relkind = 'r' AND NOT c.relispartition AND c.relreplident IN ('d', 'i')
	AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid
		AND (i.indisunique OR i.indisexclusion)
		AND NOT (i.indisreplident OR (c.relreplident = 'd' AND i.indisprimary))),
	'{}'::text[]
	FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)`

// netSafeFullSQL is netSafeSQL for a REPLICA IDENTITY FULL table: a plain
// table without an exclusion constraint nor a unique index on an
// expression or with a predicate, and the columns of its unique indexes
// (an update changing one goes one by one: netTable.guard).
const netSafeFullSQL = `SELECT c.relkind = 'r' AND NOT c.relispartition
	AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid
		AND (i.indisexclusion OR (i.indisunique AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)))),
	coalesce((SELECT array_agg(DISTINCT a.attname::text) FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey::int2[])
		WHERE i.indrelid = c.oid AND i.indisunique), '{}')
	FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)`

// netRule is what the target's catalog allows a table: set-based apply,
// and the columns of a REPLICA IDENTITY FULL table's unique indexes.
type netRule struct {
	ok    bool
	guard []string
}

// netAllowed tells whether rec may be buffered for set-based apply, and
// its table's schema.name; p.netLast is then rel's.
func (p *replayer) netAllowed(ctx context.Context, rel *segment.Relation, rec *segment.Record) (string, bool, error) {
	if l := p.netLast; l.rel == rel {
		return l.name, l.ok && (rec.OldKind != "O" || l.full), nil
	}
	name := rel.Schema + "." + rel.Name
	ok, guard, err := p.netTable(ctx, rel, name)
	if err != nil {
		return "", false, err
	}
	full := rel.ReplicaIdentity == "f"
	p.netLast = netLast{rel: rel, name: name, ok: ok, full: full, guard: guard}
	return name, ok && (rec.OldKind != "O" || full), nil
}

// netLast is the relation of the last row change and what netTable said
// of it (rows of one table come in runs); anything but a row change
// empties it with netSafe.
type netLast struct {
	rel   *segment.Relation
	name  string
	ok    bool
	full  bool  // REPLICA IDENTITY FULL
	guard []int // netTable.guard
}

// netTable tells whether a table's changes may be applied set-based, and
// for a REPLICA IDENTITY FULL table the indexes of its columns in a
// unique index of the target.
func (p *replayer) netTable(ctx context.Context, rel *segment.Relation, name string) (bool, []int, error) {
	if p.perRow {
		return false, nil, nil
	}
	full := rel.ReplicaIdentity == "f"
	if full {
		// The target gets the replica identity first, as per row.
		if err := p.fullIdentity(ctx, rel); err != nil {
			return false, nil, err
		}
	} else {
		keyed := false
		for _, c := range rel.Columns {
			keyed = keyed || c.Key
		}
		if !keyed {
			return false, nil, nil
		}
	}
	rule, known := p.netSafe[name]
	if !known {
		if err := p.endRun(ctx); err != nil {
			return false, nil, err
		}
		if err := p.send(ctx); err != nil {
			return false, nil, err
		}
		sql := netSafeSQL
		if full {
			sql = netSafeFullSQL
		}
		err := p.tx.QueryRow(ctx, sql, pgx.Identifier{rel.Schema, rel.Name}.Sanitize()).Scan(&rule.ok, &rule.guard)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return false, nil, fmt.Errorf("read the indexes of %s: %w", name, err)
		}
		if p.netSafe == nil {
			p.netSafe = map[string]netRule{}
		}
		p.netSafe[name] = rule
	}
	if !rule.ok {
		return false, nil, nil
	}
	var guard []int
	for _, g := range rule.guard {
		i := slices.IndexFunc(rel.Columns, func(c segment.Column) bool { return c.Name == g })
		if i < 0 {
			return false, nil, nil // a unique column the stream does not send
		}
		guard = append(guard, i)
	}
	return true, guard, nil
}

// applyNet applies the buffered changes set-based, or one by one when a
// statement fails or touches another number of rows than it names.
func (p *replayer) applyNet(ctx context.Context) error {
	b := p.net
	// The net statements and the COPY text are made while the previous
	// batch's COPY still runs on the target.
	var sets []netSet
	if len(b.recs) > 0 {
		sets = make([]netSet, len(b.order))
		for n, t := range b.order {
			sets[n] = t.net()
			for i := range sets[n].inserts {
				sets[n].inserts[i].render(t)
			}
		}
	}
	if err := p.settleNet(ctx); err != nil {
		return err
	}
	if len(b.recs) == 0 {
		return nil
	}
	p.net = netBuffer{}
	// What is queued one by one goes first, so its errors name its rows.
	if err := p.endRun(ctx); err != nil {
		return err
	}
	if err := p.send(ctx); err != nil {
		return err
	}
	// The batch's savepoint (overlap.go): the one the last batch opened,
	// when nothing ran since.
	if !p.netSaved {
		sql := "SAVEPOINT btfu_net"
		if p.netOpen {
			sql = "RELEASE SAVEPOINT btfu_net; SAVEPOINT btfu_net"
		}
		if _, err := p.tx.Exec(ctx, sql); err != nil {
			return err
		}
	}
	p.netOpen, p.netSaved = true, false
	// How each table's values are matched is read from the target's
	// catalog here; the batch's statements then run on a goroutine of
	// their own while the next batch is read (overlap.go).
	hows := make([][]typeInfo, len(b.order))
	for n, t := range b.order {
		how, err := p.matches(ctx, t.rel)
		if err != nil {
			return p.finishNet(ctx, b, err)
		}
		hows[n] = how
	}
	tx := p.tx
	if st, ok := tx.(*settledTx); ok {
		tx = st.Tx
	}
	pg := p.conn.PgConn()
	done := make(chan netResult, 1)
	p.overlapCopied = 0
	go func() {
		var copied int64
		var err error
		for n, t := range b.order {
			var c int64
			c, err = applyNetTable(ctx, tx, pg, t, sets[n], hows[n])
			copied += c
			if err != nil {
				break
			}
		}
		p.overlapCopied = copied // read after done
		if err != nil {
			done <- netResult{err: err}
			return
		}
		// Done: the batch's savepoint is released and the next one's
		// opened in one round trip, with no wait for the replayer.
		if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT btfu_net; SAVEPOINT btfu_net"); err != nil {
			done <- netResult{err: fmt.Errorf("release the savepoint of a set-based batch: %w", err), fatal: true}
			return
		}
		done <- netResult{}
	}()
	p.pendingNet = &netPending{b: b, done: done}
	return nil
}

// finishNet counts a batch that succeeded (its goroutine released its
// savepoint) or, when a set-based statement failed, rolls back to its
// savepoint and applies the batch one change at a time.
func (p *replayer) finishNet(ctx context.Context, b netBuffer, failed error) error {
	if failed == nil {
		p.netRows += int64(len(b.recs))
		p.netBatches++
		p.reuse(b)
		return nil
	}
	if ctx.Err() != nil {
		return failed
	}
	if _, err := p.tx.Exec(ctx, "ROLLBACK TO SAVEPOINT btfu_net"); err != nil {
		return fmt.Errorf("%w (then rolling back to apply the changes one by one: %v)", failed, err)
	}
	p.netFallbacks++
	// What replay queued since the batch (statements, a run of inserts)
	// follows it in source order: it waits until the batch's changes
	// are sent, and goes on after them.
	cur, batch, pending, run := p.cur, p.batch, p.pending, p.run
	p.batch, p.pending, p.run = nil, nil, nil
	defer func() { p.cur, p.batch, p.pending, p.run = cur, batch, pending, run }()
	for _, c := range b.recs {
		p.cur = c.begin
		if err := p.rowChange(ctx, c.rel, c.rec); err != nil {
			var re *ReplayError
			if errors.As(err, &re) {
				return err
			}
			return &ReplayError{LSN: c.begin.LSN(), Table: c.rel.Schema + "." + c.rel.Name, Err: err}
		}
	}
	if err := p.endRun(ctx); err != nil {
		return err
	}
	if err := p.send(ctx); err != nil {
		return err
	}
	// One by one every change applied: the target holds what the
	// source did; the set-based statement failed for a reason of its own
	// (netFallbacks counts it).
	p.reuse(b)
	return nil
}

// reuse keeps a finished batch's change list, rows and order lists for
// the next batch.
func (p *replayer) reuse(b netBuffer) {
	clear(b.recs)
	p.spareRecs = b.recs[:0]
	for _, t := range b.order {
		p.netPool.put(t)
	}
}

// applyNetTable applies one table's net changes on tx (pg for COPY):
// deletes, then updates per set of columns, then inserts per set of
// columns; how is p.matches of its relation. It returns the rows COPY
// stored. It runs on the batch's goroutine: it touches only its
// arguments.
func applyNetTable(ctx context.Context, tx pgx.Tx, pg *pgconn.PgConn, t *netTable, s netSet, how []typeInfo) (int64, error) {
	cols := t.rel.Columns
	tbl := table(t.rel)
	// named is the condition on the table's row alias that names a
	// group's rows, whose values are the first arrays (btfu_u.c0, …):
	// a keyed table's key columns, matched with '=' (a replica identity
	// index has it), the value read as the type's base type, as per row
	// (where); a REPLICA IDENTITY FULL table's every column, as per row
	// (fullCond), NULL where the row's is.
	named := func(alias string, g netGroup) string {
		var conds []string
		n := 0
		for i, c := range cols {
			col := alias + "." + ident(c.Name)
			switch {
			case n < len(g.match) && g.match[n] == i:
				val := fmt.Sprintf("btfu_u.c%d::%s", n, how[i].cast)
				if t.full {
					conds = append(conds, fullCondOn(col, val, how[i].match))
				} else {
					conds = append(conds, col+" = "+val)
				}
				n++
			case t.full:
				conds = append(conds, col+" IS NULL")
			}
		}
		return strings.Join(conds, " AND ")
	}
	// from is the rows of a statement, as btfu_u (the arrays c0, … of
	// its n columns), and where the condition on the table (btfu_t)
	// naming them. A keyed table's key names one row. A REPLICA IDENTITY
	// FULL table's values may name several (duplicates): each array row
	// then picks one of them (btfu_ctid), as per-row replay's LIMIT 1
	// does. A target row picked twice is changed once, and the count
	// falls short.
	from := func(n int, g netGroup, update bool) (string, string) {
		var ps, as []string
		for j := range n {
			ps = append(ps, fmt.Sprintf("$%d::text[]", j+1))
			as = append(as, fmt.Sprintf("c%d", j))
		}
		if !t.full {
			return "unnest(" + strings.Join(ps, ", ") + ") AS btfu_u(" + strings.Join(as, ", ") + ")", named("btfu_t", g)
		}
		vals := ""
		if update {
			vals = ", btfu_u.*"
		}
		return "(SELECT DISTINCT ON (btfu_u.btfu_n) btfu_m.ctid AS btfu_ctid" + vals +
			" FROM unnest(" + strings.Join(ps, ", ") + ") WITH ORDINALITY AS btfu_u(" + strings.Join(as, ", ") + ", btfu_n)" +
			" JOIN ONLY " + tbl + " AS btfu_m ON " + named("btfu_m", g) +
			" ORDER BY btfu_u.btfu_n) AS btfu_u", "btfu_t.ctid = btfu_u.btfu_ctid"
	}
	// exec queues sql over a group's rows in chunks, with one text array
	// per column named (from the row's keyVals), then per column set
	// (from its vals); sendBatch runs the chunks pipelined and checks
	// each one's count.
	batch := &pgx.Batch{}
	var want []int
	exec := func(sql string, g netGroup, set []int) {
		size := netChunk
		if t.full {
			// A FULL table often has no index to match by: then each
			// statement reads the whole table once (a hash join), and
			// one statement per group is cheapest. With an index the
			// planner, which sees the array's length, uses it.
			size = netMax
		}
		for start := 0; start < len(g.rows); start += size {
			chunk := g.rows[start:min(start+size, len(g.rows))]
			arrays := make([][]*string, len(g.match)+len(set))
			for j := range arrays {
				arrays[j] = make([]*string, len(chunk))
			}
			for r, row := range chunk {
				for j, i := range g.match {
					if v := &row.keyVals[i]; v.Kind == segment.Text {
						arrays[j][r] = &v.Text
					}
				}
				for j, i := range set {
					if v := &row.vals[i]; v.Kind == segment.Text {
						arrays[len(g.match)+j][r] = &v.Text
					}
				}
			}
			args := make([]any, len(arrays))
			for j := range arrays {
				args[j] = arrays[j]
			}
			batch.Queue(sql, args...)
			want = append(want, len(chunk))
		}
	}
	sendBatch := func() error {
		if len(want) == 0 {
			return nil
		}
		br := tx.SendBatch(ctx, batch)
		defer br.Close()
		for n, w := range want {
			tag, err := br.Exec()
			if err != nil {
				return err
			}
			if tag.RowsAffected() != int64(w) {
				return fmt.Errorf("%w: %s on %s touched %d of %d rows", errNetCount, strings.Fields(batch.QueuedQueries[n].SQL)[0], t.name, tag.RowsAffected(), w)
			}
		}
		batch, want = &pgx.Batch{}, nil
		return br.Close()
	}
	for _, g := range s.checks {
		rows, _ := from(len(g.match), g, false)
		exec("SELECT FROM "+rows, g, nil)
	}
	for _, g := range s.deletes {
		using, where := from(len(g.match), g, false)
		exec("DELETE FROM ONLY "+tbl+" AS btfu_t USING "+using+" WHERE "+where, g, nil)
	}
	for _, g := range s.updates {
		var sets []string
		for n, i := range g.cols {
			sets = append(sets, fmt.Sprintf("%s = btfu_u.c%d::%s", ident(cols[i].Name), len(g.match)+n, cols[i].Type))
		}
		rows, where := from(len(g.match)+len(g.cols), g, true)
		exec("UPDATE ONLY "+tbl+" AS btfu_t SET "+strings.Join(sets, ", ")+" FROM "+rows+" WHERE "+where, g, g.cols)
	}
	if err := sendBatch(); err != nil {
		return 0, err
	}
	var copied int64
	for _, g := range s.inserts {
		c, err := netCopy(ctx, pg, t, g)
		copied += c
		if err != nil {
			return copied, err
		}
	}
	return copied, nil
}

// render writes the group's rows as COPY text, in parts of about
// copyChunk bytes.
func (g *netGroup) render(t *netTable) {
	// The text's size, unescaped: each part is allocated once, at about
	// its size, instead of grown by doubling.
	left := 0
	for _, r := range g.rows {
		for _, i := range g.cols {
			left += len(r.vals[i].Text) + 2
		}
	}
	var buf bytes.Buffer
	buf.Grow(min(left+left/16, copyChunk+copyChunk/8))
	rows := 0
	cut := func() {
		if rows > 0 {
			g.copy = append(g.copy, copyPart{data: buf.Bytes(), rows: rows})
			left -= buf.Len()
			buf = bytes.Buffer{} // the part keeps its bytes
			if left > 0 {
				buf.Grow(min(left+left/16, copyChunk+copyChunk/8))
			}
			rows = 0
		}
	}
	for _, r := range g.rows {
		for n, i := range g.cols {
			if n > 0 {
				buf.WriteByte('\t')
			}
			if v := r.vals[i]; v.Kind == segment.Null {
				buf.WriteString(`\N`)
			} else {
				copyEscape(&buf, v.Text)
			}
		}
		buf.WriteByte('\n')
		rows++
		if buf.Len() >= copyChunk {
			cut()
		}
	}
	cut()
}

// netCopy inserts a group's rows with COPY, one statement per part of
// its text (render), and returns how many it stored. It runs on the
// batch's goroutine: it touches only pg, t and g.
func netCopy(ctx context.Context, pg *pgconn.PgConn, t *netTable, g netGroup) (int64, error) {
	var names []string
	for _, i := range g.cols {
		names = append(names, ident(t.rel.Columns[i].Name))
	}
	sql := "COPY " + table(t.rel) + " (" + strings.Join(names, ", ") + ") FROM STDIN"
	var copied int64
	for _, part := range g.copy {
		tag, err := pg.CopyFrom(ctx, bytes.NewReader(part.data), sql)
		if err != nil {
			return copied, err
		}
		if tag.RowsAffected() != int64(part.rows) {
			return copied, fmt.Errorf("%w: COPY into %s stored %d of %d rows", errNetCount, t.name, tag.RowsAffected(), part.rows)
		}
		copied += int64(part.rows)
	}
	return copied, nil
}
