package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/btfu/btfu/segment"
)

// batchTxs is how many source transactions share one target transaction;
// order is never changed (DESIGN 4.5).
const batchTxs = 500

// pipelineDepth is how many statements are sent in one round trip
// (pgx.Batch, in order); their results are checked one by one.
const pipelineDepth = 1000

// copyMin is the shortest run of inserts into one table (same column set)
// sent with COPY instead of pipelined INSERTs; copyChunk bounds the COPY
// data held in memory before it is sent.
const (
	copyMin   = 8
	copyChunk = 4 << 20
)

// insertRun collects consecutive inserts into one table with the same
// columns. Anything else (another table, an UPDATE, DDL, the end of the
// target transaction) ends the run first, so order is kept.
type insertRun struct {
	key     string // table and column list
	table   string // schema.name, for messages
	copySQL string
	rows    int         // in the current chunk
	lsn     segment.LSN // of the first row in the current chunk
	buf     bytes.Buffer
	copying bool     // a chunk was sent with COPY
	stmts   []insert // while the run is shorter than copyMin
	// for messages: the row's columns, and where each source
	// transaction's rows start in the current chunk
	cols []segment.Column
	txs  []runTx
}

type runTx struct {
	row int // 0-based, in the chunk
	lsn segment.LSN
}

type insert struct {
	lsn  segment.LSN
	key  string // for messages
	sql  string
	args []any
}

// queued is a statement waiting in the pipeline, with what an error must
// name.
type queued struct {
	lsn       segment.LSN
	table     string
	key       string
	what      string // for messages: "UPDATE", "DELETE", "captured DDL ..."
	expectOne bool
}

// err is a failure of q as a ReplayError naming its transaction, table,
// operation and key.
func (q queued) err(err error) error {
	if q.what != "" {
		err = fmt.Errorf("%s: %w", q.what, err)
	}
	return &ReplayError{LSN: q.lsn, Table: q.table, Key: q.key, Err: err}
}

// replayer applies segment records to the target.
type replayer struct {
	conn    *pgx.Conn
	base    segment.LSN // consistent point: transactions committing before it are in the dump
	target  Target
	tx      pgx.Tx
	inBatch int
	done    bool // the target was reached

	txs, rows int64
	copied    int64 // rows sent with COPY
	batch     *pgx.Batch
	pending   []queued
	// pendingNet: the set-based batch whose statements still run
	// (overlap.go)
	pendingNet    *netPending
	overlapCopied int64 // rows its COPYs stored, once done
	// netOpen: a btfu_net savepoint is open in the target transaction;
	// netSaved: the last batch opened it and nothing ran in it since
	// (overlap.go)
	netOpen, netSaved bool
	run               *insertRun
	leftOut           map[string]bool // schema.table whose changes are not replayed (Plan.LeftOut)
	// gone: tables that joined after the base and were dropped before the
	// target (Plan.JoinedThenDropped), by schema.table; their changes in
	// between are not replayed. goneOID binds each to the relation seen
	// first in that window, so a new table of the same name is replayed.
	gone    map[string]Gone
	goneOID map[string]uint32
	invalid []string // tables left out for text the target refuses, and why
	// per transaction
	cur        *segment.Record
	skip       bool
	capturedDD bool
	ddl        ddlState
	// captured DDL: what failing DDL does, what was skipped, how many
	// commands on temporary objects were left alone
	onDDLError DDLErrorPolicy
	skippedDDL []SkippedDDL
	tempDDL    int
	ownerDDL   int // statements about owners left out (Summary.OwnerChanges)
	// noOwner: restored without owners (Options.NoOwner): captured
	// statements run as the restoring role, ALTER … OWNER TO left out.
	noOwner bool
	// roles: whether replay can run a statement as a role of the source
	// (it exists on the target and the restoring role may act as it)
	roles map[string]bool
	notes notes         // what the restore did differently, for the summary
	guard *triggerGuard // nil: triggers are left as they are
	// session: the replay session's own search_path and settings, put
	// back after a captured statement ran in its source session's
	session map[string]string
	// cic: CREATE INDEX CONCURRENTLY replayed at its start, by statement
	// key, with the target's error (nil: built), until its end message
	cic map[string]error
	// typeMatch caches, per column type, how rows are matched on the
	// target (match.go); DDL empties it.
	typeMatch map[string]typeInfo
	// noInputCols caches, per relation, its columns of types the target
	// never reads back (unreadable); DDL empties it.
	noInputCols map[*segment.Relation][]int
	// relKinds caches the target's relkind per schema.table; DDL empties
	// it.
	relKinds map[string]byte
	// identityFull: relations whose REPLICA IDENTITY FULL the target has
	// (fullIdentity)
	identityFull map[*segment.Relation]bool
	// renamed: tables (source OIDs) of a renamed schema, with its old
	// and new name; the stream names the old one until a table's
	// relation changes (relation). renamedRels caches the renamed copies.
	renamed     map[uint32][2]string
	renamedRels map[*segment.Relation]*segment.Relation
	// set-based apply (setapply.go): the open target transaction's
	// buffered changes, reduced per table, and what each table allows
	net netBuffer
	// spareRecs is a finished batch's change list, reused by the next
	// (a batch holds up to netMax changes)
	spareRecs []netRec
	netPool   netPool // rows and order lists of finished batches
	// netLimit: the changes the open batch is applied at (netFirst, then
	// doubling up to netMax)
	netLimit int
	// netSafe caches, per schema.table, whether its changes may be
	// applied set-based; anything but a row change empties it.
	netSafe map[string]netRule
	netLast netLast
	// netRows counts changes applied set-based; netFallbacks the
	// buffers applied one by one after a set-based statement failed.
	netRows, netFallbacks int64
	netBatches            int64 // batches applied set-based
	// perRow: apply every change on its own, as before set-based apply
	// (tests and measurements compare the two)
	perRow bool
}

// ReplayError stops replay at a transaction that cannot be applied as
// recorded (DESIGN 4.5).
type ReplayError struct {
	LSN   segment.LSN
	Table string
	Key   string
	Err   error
}

func (e *ReplayError) Error() string {
	s := fmt.Sprintf("replay stopped at the transaction committed at %s", e.LSN)
	if e.Table != "" {
		s += " on " + e.Table
	}
	if e.Key != "" {
		s += " (key " + e.Key + ")"
	}
	return s + ": " + e.Err.Error()
}

func (e *ReplayError) Unwrap() error { return e.Err }

func (p *replayer) record(ctx context.Context, r relSnap, rec *segment.Record) error {
	switch rec.T {
	case segment.TypeRelation:
		return nil
	case segment.TypeBegin:
		p.cur, p.capturedDD, p.ddl = rec, false, ddlState{}
		// DESIGN 1.3: a transaction is after the base iff its commit LSN is
		// at or after the consistent point.
		p.skip = rec.LSN() < p.base
		if p.skip {
			return nil
		}
		if p.beyond(rec) {
			p.done = true
			return nil
		}
		if p.tx == nil {
			tx, err := p.conn.Begin(ctx)
			if err != nil {
				return err
			}
			p.tx = p.settled(tx)
		}
		return nil
	case segment.TypeCommit:
		if p.skip {
			return nil
		}
		p.txs++
		p.inBatch++
		if p.inBatch >= batchTxs {
			return p.flush(ctx)
		}
		return nil
	}
	if p.skip || p.cur == nil {
		return nil
	}
	if err := p.change(ctx, r, rec); err != nil {
		var re *ReplayError
		if errors.As(err, &re) {
			return err
		}
		return &ReplayError{LSN: p.cur.LSN(), Err: err}
	}
	return nil
}

func (p *replayer) beyond(begin *segment.Record) bool {
	t := p.target
	switch {
	case t.Latest:
		return false
	case !t.Time.IsZero():
		return begin.CommitTime.After(t.Time)
	}
	return begin.End() > t.LSN
}

// queue adds a statement to the pipeline, sending it when full.
func (p *replayer) queue(ctx context.Context, q queued, sql string, args ...any) error {
	if err := p.endRun(ctx); err != nil {
		return err
	}
	q.lsn = p.cur.LSN()
	return p.queueAt(ctx, q, sql, args...)
}

func (p *replayer) queueAt(ctx context.Context, q queued, sql string, args ...any) error {
	if p.batch == nil {
		p.batch = &pgx.Batch{}
	}
	p.batch.Queue(sql, args...)
	p.pending = append(p.pending, q)
	if len(p.pending) >= pipelineDepth {
		return p.send(ctx)
	}
	return nil
}

// send runs the queued statements in one round trip and checks each
// result in order.
func (p *replayer) send(ctx context.Context) error {
	if p.batch == nil || len(p.pending) == 0 {
		return nil
	}
	batch, pending := p.batch, p.pending
	p.batch, p.pending = nil, nil
	br := p.tx.SendBatch(ctx, batch)
	defer br.Close()
	for _, q := range pending {
		tag, err := br.Exec()
		if err != nil {
			// The pipeline prepares every new statement before it runs
			// any: a statement that cannot be prepared fails the first
			// result. Name the statement that failed, not the first.
			var pe pgx.ErrPreprocessingBatch
			if errors.As(err, &pe) {
				for i, qq := range batch.QueuedQueries {
					if qq.SQL == pe.SQL() {
						q = pending[i]
						break
					}
				}
			}
			return q.err(err)
		}
		if q.expectOne && tag.RowsAffected() != 1 {
			return &ReplayError{LSN: q.lsn, Table: q.table, Key: q.key, Err: fmt.Errorf("%s affected %d rows, want exactly 1", q.what, tag.RowsAffected())}
		}
	}
	return br.Close()
}

// flush sends what is queued and commits the open target transaction.
func (p *replayer) flush(ctx context.Context) error {
	if p.tx == nil {
		return nil
	}
	if err := p.applyNet(ctx); err != nil {
		return err
	}
	if err := p.endRun(ctx); err != nil {
		return err
	}
	if err := p.send(ctx); err != nil {
		return err
	}
	err := p.tx.Commit(ctx)
	p.tx, p.inBatch = nil, 0
	return err
}

func (p *replayer) lastLSN() segment.LSN {
	if p.cur == nil {
		return 0
	}
	return p.cur.LSN()
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

func table(rel *segment.Relation) string { return pgx.Identifier{rel.Schema, rel.Name}.Sanitize() }

// relation is the reader's relation oid, in the schema it is in now:
// after ALTER SCHEMA … RENAME, pgoutput goes on naming the old one.
func (p *replayer) relation(r relSnap, oid uint32) *segment.Relation {
	rel := r.Relation(oid)
	if rel == nil || len(p.renamed) == 0 {
		return rel
	}
	rn, ok := p.renamed[oid]
	if !ok || rel.Schema != rn[0] {
		return rel
	}
	if c, ok := p.renamedRels[rel]; ok {
		return c
	}
	c := *rel
	c.Schema = rn[1]
	if p.renamedRels == nil {
		p.renamedRels = map[*segment.Relation]*segment.Relation{}
	}
	p.renamedRels[rel] = &c
	return &c
}

// notReplayed says whether the changes of relation oid in the current
// transaction are left out: the table is LEFT OUT, or it is in its window
// between joining after the base and being dropped.
func (p *replayer) notReplayed(rel *segment.Relation, oid uint32) bool {
	if len(p.leftOut) == 0 && len(p.gone) == 0 {
		return false
	}
	name := rel.Schema + "." + rel.Name
	if p.leftOut[name] {
		return true
	}
	g, ok := p.gone[name]
	if !ok || p.cur == nil {
		return false
	}
	lsn := p.cur.LSN()
	if lsn < g.Joined || lsn > g.DroppedAt {
		return false
	}
	if bound, ok := p.goneOID[name]; ok {
		return bound == oid
	}
	if p.goneOID == nil {
		p.goneOID = map[string]uint32{}
	}
	p.goneOID[name] = oid
	return true
}

func (p *replayer) change(ctx context.Context, r relSnap, rec *segment.Record) error {
	row := rec.T == segment.TypeInsert || rec.T == segment.TypeUpdate || rec.T == segment.TypeDelete
	if row || rec.T == segment.TypeDDL {
		if rel := p.relation(r, rec.RelOID); rel != nil {
			if p.notReplayed(rel, rec.RelOID) {
				return nil
			}
			if row {
				why, err := p.unreadable(ctx, rel, rec, r.notUTF8)
				if err != nil {
					return err
				}
				if why != "" {
					vals := rec.Old
					if vals == nil {
						vals = rec.New
					}
					p.leaveOut(rel.Schema, rel.Name, fmt.Sprintf("whose row (%s) holds %s", rowKey(rel, vals), why))
					return nil
				}
			}
		}
	}
	if rec.T == segment.TypeTruncate && (len(p.leftOut) > 0 || len(p.gone) > 0) {
		var keep []uint32
		for _, oid := range rec.RelOIDs {
			if rel := p.relation(r, oid); rel == nil || !p.notReplayed(rel, oid) {
				keep = append(keep, oid)
			}
		}
		if len(keep) == 0 {
			return nil
		}
		trunc := *rec
		trunc.RelOIDs = keep
		rec = &trunc
	}
	switch rec.T {
	case segment.TypeInsert, segment.TypeUpdate, segment.TypeDelete:
		rel := p.relation(r, rec.RelOID)
		if rel == nil {
			return fmt.Errorf("change for relation %d without its schema", rec.RelOID)
		}
		p.rows++
		return p.netChange(ctx, rel, rec, r.bytes)
	}
	// Everything else may depend on the order of row changes (TRUNCATE,
	// DDL, messages): the buffered net changes go first, and what a
	// table's set-based apply depends on is asked again after it.
	if err := p.applyNet(ctx); err != nil {
		return err
	}
	p.netSafe, p.netLast = nil, netLast{}
	switch rec.T {
	case segment.TypeTruncate:
		var names []string
		for _, oid := range rec.RelOIDs {
			rel := p.relation(r, oid)
			if rel == nil {
				return fmt.Errorf("truncate of relation %d without its schema", oid)
			}
			// The message names every table truncated (a parent's
			// children too): each alone.
			only, err := p.only(ctx, rel.Schema, rel.Name)
			if err != nil {
				return err
			}
			names = append(names, only+table(rel))
		}
		// CASCADE whatever the source said: the message names the
		// published tables truncated, not a partitioned table (no
		// storage) nor a table left out, which a foreign key may make
		// PostgreSQL want in the statement; the source truncated them
		// in the same statement (DESIGN 4.5 keeps the flag's intent:
		// the tables truncated are the source's).
		sql := "TRUNCATE " + strings.Join(names, ", ")
		if rec.RestartIdentity {
			sql += " RESTART IDENTITY"
		}
		sql += " CASCADE"
		return p.queue(ctx, queued{what: sql}, sql)
	case segment.TypeMessage:
		return p.message(ctx, rec)
	case segment.TypeDDL:
		if p.capturedDD {
			return nil
		}
		// Derived statements are idempotent where replay may meet them
		// after the captured DDL already ran.
		rel := p.relation(r, rec.RelOID)
		for _, stmt := range splitStatements(rec.SQL) {
			stmt, err := p.onRoot(ctx, rel, stmt)
			if err != nil {
				return err
			}
			if done, err := p.typeAlready(ctx, stmt); err != nil || done {
				if err != nil {
					return err
				}
				continue
			}
			if err := p.runDDL(ctx, "derived DDL", nil, stmt); err != nil {
				return err
			}
		}
		return nil
	}
	return nil
}

// rowChange applies one insert, update or delete on its own (pipelined;
// runs of inserts go through COPY), in source order.
func (p *replayer) rowChange(ctx context.Context, rel *segment.Relation, rec *segment.Record) error {
	switch rec.T {
	case segment.TypeInsert:
		var cols, vals []string
		var args []any
		for i, c := range rel.Columns {
			v := rec.New[i]
			if v.Kind == segment.Unchanged {
				continue
			}
			cols = append(cols, ident(c.Name))
			args = append(args, arg(v))
			vals = append(vals, fmt.Sprintf("$%d::text::%s", len(args), c.Type))
		}
		return p.insert(ctx, rel, rec, cols, vals, args)
	case segment.TypeUpdate, segment.TypeDelete:
		if err := p.fullIdentity(ctx, rel); err != nil {
			return err
		}
		var args []any
		var sets []string
		if rec.T == segment.TypeUpdate {
			for i, c := range rel.Columns {
				if rec.New[i].Kind == segment.Unchanged {
					continue // unchanged TOAST: left out (DESIGN 4.5)
				}
				// Columns whose value did not change are left out: a key
				// the source did not change (no old key sent) and, with
				// REPLICA IDENTITY FULL, columns equal in the old row. An
				// identity column GENERATED ALWAYS may not be SET at all.
				if (rec.Old == nil && c.Key) || (rec.Old != nil && rec.Old[i] == rec.New[i] && rec.OldKind == "O") {
					continue
				}
				args = append(args, arg(rec.New[i]))
				sets = append(sets, fmt.Sprintf("%s = $%d::text::%s", ident(c.Name), len(args), c.Type))
			}
		}
		where, key, err := p.where(ctx, rel, rec, &args)
		if err != nil {
			return err
		}
		only, err := p.only(ctx, rel.Schema, rel.Name)
		if err != nil {
			return err
		}
		var sql string
		if rec.T == segment.TypeUpdate {
			if len(sets) == 0 {
				return nil
			}
			sql = "UPDATE " + only + table(rel) + " SET " + strings.Join(sets, ", ") + " WHERE " + where
		} else {
			sql = "DELETE FROM " + only + table(rel) + " WHERE " + where
		}
		return p.queue(ctx, queued{table: rel.Schema + "." + rel.Name, key: key, expectOne: true,
			what: map[string]string{"u": "UPDATE", "d": "DELETE"}[rec.T]}, sql, args...)
	}
	return nil
}

// derivedTypeRE is a derived column type change (stream.DeriveDDL).
var derivedTypeRE = regexp.MustCompile(`^ALTER TABLE ("(?:[^"]|"")*"\."(?:[^"]|"")*") ALTER COLUMN "((?:[^"]|"")*)" TYPE (.+)$`)

// typeAlready tells a derived column type change the target already
// made: captured DDL on an inheritance parent changed its children's
// column too, and PostgreSQL refuses the change on a child ("cannot
// alter inherited column"), which a child's next Relation message
// derives later.
func (p *replayer) typeAlready(ctx context.Context, stmt string) (bool, error) {
	m := derivedTypeRE.FindStringSubmatch(stmt)
	if m == nil {
		return false, nil
	}
	if err := p.send(ctx); err != nil {
		return false, err
	}
	var cur *string
	err := p.tx.QueryRow(ctx, `SELECT pg_catalog.format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute
		WHERE attrelid = pg_catalog.to_regclass($1) AND attname = $2 AND NOT attisdropped`, m[1], strings.ReplaceAll(m[2], `""`, `"`)).Scan(&cur)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, &ReplayError{LSN: p.cur.LSN(), Err: fmt.Errorf("read the type of a column for %q: %w", stmt, err)}
	}
	return cur != nil && *cur == m[3], nil
}

// onRoot turns a derived column change of a partition into the same
// change of its partition tree's root: a partition's columns are its
// root's, and PostgreSQL refuses to change them on the partition. The
// partitions of a table published without publish_via_partition_root
// each send such a change; on the root the first one applies and the
// others find it done (the statements are idempotent).
func (p *replayer) onRoot(ctx context.Context, rel *segment.Relation, stmt string) (string, error) {
	if rel == nil {
		return stmt, nil
	}
	prefix := "ALTER TABLE " + table(rel) + " "
	rest, ok := strings.CutPrefix(stmt, prefix)
	if !ok || !(strings.HasPrefix(rest, "ADD COLUMN ") || strings.HasPrefix(rest, "DROP COLUMN ") || strings.HasPrefix(rest, "ALTER COLUMN ")) {
		return stmt, nil
	}
	if err := p.endRun(ctx); err != nil {
		return "", err
	}
	if err := p.send(ctx); err != nil {
		return "", err
	}
	var root *string
	err := p.tx.QueryRow(ctx, `SELECT format('%I.%I', rn.nspname, r.relname)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
			pg_class r JOIN pg_namespace rn ON rn.oid = r.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relispartition AND r.oid = pg_partition_root(c.oid)`,
		rel.Schema, rel.Name).Scan(&root)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && root == nil) {
		return stmt, nil
	}
	if err != nil {
		return "", &ReplayError{LSN: p.cur.LSN(), Err: fmt.Errorf("find the partition root of %s.%s: %w", rel.Schema, rel.Name, err)}
	}
	return "ALTER TABLE " + *root + " " + rest, nil
}

// fullIdentity gives a table the REPLICA IDENTITY FULL its relation
// says the source had: btfu's capture sets it on new tables without a key
// (tables_without_key = "replica_identity_full") inside its trigger, where
// no captured statement says so, and a publication of the application's
// restored on the target would then refuse the UPDATE or DELETE that the
// source ran ("does not have a replica identity and publishes updates").
func (p *replayer) fullIdentity(ctx context.Context, rel *segment.Relation) error {
	if rel.ReplicaIdentity != "f" || p.identityFull[rel] {
		return nil
	}
	if p.identityFull == nil {
		p.identityFull = map[*segment.Relation]bool{}
	}
	p.identityFull[rel] = true
	if err := p.send(ctx); err != nil {
		return err
	}
	var ident string
	tbl := pgx.Identifier{rel.Schema, rel.Name}.Sanitize()
	if err := p.tx.QueryRow(ctx, "SELECT coalesce((SELECT relreplident::text FROM pg_catalog.pg_class WHERE oid = pg_catalog.to_regclass($1)), 'f')", tbl).Scan(&ident); err != nil {
		return &ReplayError{LSN: p.cur.LSN(), Err: fmt.Errorf("read the replica identity of %s: %w", tbl, err)}
	}
	if ident == "f" {
		return nil
	}
	return p.runDDL(ctx, "replica identity the source had", nil, "ALTER TABLE "+tbl+" REPLICA IDENTITY FULL")
}

// only is "ONLY " for a table that is not partitioned: a change pgoutput
// names a table by is that table's alone, never its inheritance
// children's (which have rows with the same key, and changes of their
// own). A partitioned table (published through its root) takes its
// partitions' rows, so it goes without.
func (p *replayer) only(ctx context.Context, schema, name string) (string, error) {
	key := schema + "." + name
	if k, ok := p.relKinds[key]; ok {
		if k == 'p' {
			return "", nil
		}
		return "ONLY ", nil
	}
	if err := p.send(ctx); err != nil {
		return "", err
	}
	var kind string
	err := p.tx.QueryRow(ctx, "SELECT coalesce((SELECT relkind::text FROM pg_catalog.pg_class WHERE oid = pg_catalog.to_regclass($1)), 'r')", pgx.Identifier{schema, name}.Sanitize()).Scan(&kind)
	if err != nil {
		return "", fmt.Errorf("read the kind of %s: %w", key, err)
	}
	if p.relKinds == nil {
		p.relKinds = map[string]byte{}
	}
	p.relKinds[key] = kind[0]
	return p.only(ctx, schema, name)
}

// where builds the row match: the replica identity key, or every column
// for REPLICA IDENTITY FULL, one row at a time even when duplicates exist
// (DESIGN 4.5). A FULL column is matched by equality, by equality and its
// text form, or by its text form alone, as its type on the target allows
// (match.go).
func (p *replayer) where(ctx context.Context, rel *segment.Relation, rec *segment.Record, args *[]any) (string, string, error) {
	vals := rec.Old
	if vals == nil {
		vals = rec.New // key unchanged: the new row carries it
	}
	full := rec.OldKind == "O"
	how, err := p.matches(ctx, rel)
	if err != nil {
		return "", "", err
	}
	var conds, key []string
	for i, c := range rel.Columns {
		if !full && !c.Key {
			continue
		}
		v := vals[i]
		if v.Kind == segment.Unchanged {
			continue
		}
		if v.Kind == segment.Null {
			conds = append(conds, ident(c.Name)+" IS NULL")
			key = append(key, c.Name+"=NULL")
			continue
		}
		*args = append(*args, v.Text)
		key = append(key, c.Name+"="+v.Text)
		if full {
			conds = append(conds, fullCond(c.Name, how[i].cast, len(*args), how[i].match))
			continue
		}
		// Key columns are NOT NULL and have equality: '=' lets the
		// target use its index.
		conds = append(conds, fmt.Sprintf("%s = $%d::text::%s", ident(c.Name), len(*args), how[i].cast))
	}
	w := strings.Join(conds, " AND ")
	if w == "" {
		w = "true"
	}
	if full {
		only, err := p.only(ctx, rel.Schema, rel.Name)
		if err != nil {
			return "", "", err
		}
		w = "(tableoid, ctid) = (SELECT tableoid, ctid FROM " + only + table(rel) + " WHERE " + w + " LIMIT 1)"
	}
	return w, cutKey(strings.Join(key, ",")), nil
}

// insert adds a row to the current run of inserts, starting a new run
// when the table or the column set differs.
func (p *replayer) insert(ctx context.Context, rel *segment.Relation, rec *segment.Record, cols, vals []string, args []any) error {
	if len(cols) == 0 {
		// A table without columns: neither COPY nor VALUES can name none.
		return p.queue(ctx, queued{table: rel.Schema + "." + rel.Name, what: "INSERT"}, "INSERT INTO "+table(rel)+" DEFAULT VALUES")
	}
	colList := strings.Join(cols, ", ")
	key := table(rel) + " (" + colList + ")"
	if p.run != nil && p.run.key != key {
		if err := p.endRun(ctx); err != nil {
			return err
		}
	}
	if p.run == nil {
		p.run = &insertRun{key: key, table: rel.Schema + "." + rel.Name, copySQL: "COPY " + key + " FROM STDIN", cols: rel.Columns}
	}
	r := p.run
	if r.rows == 0 {
		r.lsn = p.cur.LSN()
		r.txs = r.txs[:0]
	}
	if n := len(r.txs); n == 0 || r.txs[n-1].lsn != p.cur.LSN() {
		r.txs = append(r.txs, runTx{row: r.rows, lsn: p.cur.LSN()})
	}
	r.rows++
	first := true
	for i := range rel.Columns {
		v := rec.New[i]
		if v.Kind == segment.Unchanged {
			continue
		}
		if !first {
			r.buf.WriteByte('\t')
		}
		first = false
		if v.Kind == segment.Null {
			r.buf.WriteString(`\N`)
		} else {
			copyEscape(&r.buf, v.Text)
		}
	}
	r.buf.WriteByte('\n')
	if !r.copying {
		if len(r.stmts) < copyMin {
			r.stmts = append(r.stmts, insert{lsn: p.cur.LSN(), args: args, key: rowKey(rel, rec.New),
				sql: "INSERT INTO " + key + " OVERRIDING SYSTEM VALUE VALUES (" + strings.Join(vals, ", ") + ")"})
		} else {
			r.stmts = nil
			r.copying = true
		}
	}
	if r.copying && r.buf.Len() >= copyChunk {
		return p.copyChunk(ctx)
	}
	return nil
}

// endRun sends the current run of inserts: pipelined INSERTs when it is
// short, COPY otherwise.
func (p *replayer) endRun(ctx context.Context) error {
	r := p.run
	if r == nil {
		return nil
	}
	if !r.copying {
		p.run = nil
		for _, st := range r.stmts {
			if err := p.queueAt(ctx, queued{table: r.table, what: "INSERT", key: st.key, lsn: st.lsn}, st.sql, st.args...); err != nil {
				return err
			}
		}
		return nil
	}
	err := p.copyChunk(ctx)
	p.run = nil
	return err
}

// copyChunk sends the statements queued before the run, then the run's
// rows with COPY, and checks that every row arrived.
func (p *replayer) copyChunk(ctx context.Context) error {
	r := p.run
	if r.rows == 0 {
		return nil
	}
	if err := p.settle(ctx); err != nil {
		return err
	}
	if err := p.send(ctx); err != nil {
		return err
	}
	rows := r.rows
	tag, err := p.tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(r.buf.Bytes()), r.copySQL)
	if err != nil {
		return r.copyError(err)
	}
	if tag.RowsAffected() != int64(rows) {
		return &ReplayError{LSN: r.lsn, Table: r.table, Err: fmt.Errorf("COPY stored %d rows, want %d", tag.RowsAffected(), rows)}
	}
	p.copied += int64(rows)
	r.buf.Reset()
	r.rows = 0
	return nil
}

var copyLineRE = regexp.MustCompile(`\bline (\d+)`)

// copyError names the row a COPY failed on, from the line its error
// context gives: its transaction and its key (or all its columns).
func (r *insertRun) copyError(err error) error {
	var pgErr *pgconn.PgError
	line := 0
	if errors.As(err, &pgErr) {
		if m := copyLineRE.FindStringSubmatch(pgErr.Where); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
	}
	lines := bytes.Split(r.buf.Bytes(), []byte{'\n'})
	if line < 1 || line > r.rows || line > len(lines) {
		return &ReplayError{LSN: r.lsn, Table: r.table, Err: fmt.Errorf("COPY of %d inserted rows starting at this transaction: %w", r.rows, err)}
	}
	lsn := r.lsn
	for _, t := range r.txs {
		if t.row <= line-1 {
			lsn = t.lsn
		}
	}
	fields := strings.Split(string(lines[line-1]), "\t")
	vals := make([]segment.Value, len(r.cols))
	for i := range vals {
		switch {
		case i >= len(fields):
		case fields[i] == `\N`:
			vals[i] = segment.Value{Kind: segment.Null}
		default:
			vals[i] = segment.TextValue(fields[i]) // still COPY-escaped: for reading only
		}
	}
	return &ReplayError{LSN: lsn, Table: r.table, Key: rowKey(&segment.Relation{Columns: r.cols}, vals),
		Err: fmt.Errorf("INSERT (row %d of a COPY of %d): %w", line, r.rows, err)}
}

// copyEscape writes s in COPY's text format.
func copyEscape(b *bytes.Buffer, s string) {
	start := 0
	for i := 0; i < len(s); i++ {
		i += copyPlain(s[i:])
		if i >= len(s) {
			break
		}
		var esc string
		switch s[i] {
		case '\\':
			esc = `\\`
		case '\n':
			esc = `\n`
		case '\r':
			esc = `\r`
		case '\t':
			esc = `\t`
		default:
			continue
		}
		b.WriteString(s[start:i])
		b.WriteString(esc)
		start = i + 1
	}
	b.WriteString(s[start:])
}

// copyPlain is how many bytes s starts with that are certainly not
// escaped in COPY text: none is '\\' or a control character. It looks at
// eight bytes at a time (values are most of what replay sends).
func copyPlain(s string) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		b := w ^ (ones * '\\')
		// a zero byte in b (the classic test), or a byte below 0x20
		if ((b-ones)&^b|(w-ones*0x20)&^w)&highs != 0 {
			break
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c == '\\' || c < 0x20 {
			break
		}
	}
	return i
}

// unreadable says why the target cannot take a change's values, "" when
// it can: text that is not valid UTF-8 (a SQL_ASCII source's), which a
// UTF-8 database refuses and cannot match; a value of a type PostgreSQL
// never reads back (pg_node_tree, …, in a copy of a system catalog).
// pg_restore could not take them either. Text is checked only when the
// segment reader says it may not be UTF-8 (notUTF8).
func (p *replayer) unreadable(ctx context.Context, rel *segment.Relation, rec *segment.Record, notUTF8 bool) (string, error) {
	if notUTF8 && invalidText(rec) {
		return "text that is not valid UTF-8", nil
	}
	cols, ok := p.noInputCols[rel]
	if !ok {
		how, err := p.matches(ctx, rel)
		if err != nil {
			return "", err
		}
		for i := range how {
			if how[i].noInput {
				cols = append(cols, i)
			}
		}
		if p.noInputCols == nil {
			p.noInputCols = map[*segment.Relation][]int{}
		}
		p.noInputCols[rel] = cols
	}
	for _, i := range cols {
		c := rel.Columns[i]
		for _, vals := range [][]segment.Value{rec.New, rec.Old} {
			if i < len(vals) && vals[i].Kind == segment.Text {
				return fmt.Sprintf("a value of type %s in column %s, which PostgreSQL does not read back", c.Type, c.Name), nil
			}
		}
	}
	return "", nil
}

// leaveOut leaves a table out of replay from the current transaction on,
// because the target cannot take its values, and says why.
func (p *replayer) leaveOut(schema, name, why string) {
	if p.leftOut == nil {
		p.leftOut = map[string]bool{}
	}
	p.leftOut[schema+"."+name] = true
	p.invalid = append(p.invalid, fmt.Sprintf("%s.%s: left out from the transaction committed at %s, %s; PostgreSQL refuses such values in this database, as pg_restore would",
		schema, name, p.cur.LSN(), why))
}

// invalidText tells a change with a text value that is not valid UTF-8.
func invalidText(rec *segment.Record) bool {
	for _, vals := range [][]segment.Value{rec.New, rec.Old} {
		for _, v := range vals {
			if v.Kind == segment.Text && !utf8.ValidString(v.Text) {
				return true
			}
		}
	}
	return false
}

func arg(v segment.Value) any {
	if v.Kind == segment.Null {
		return nil
	}
	return v.Text
}
