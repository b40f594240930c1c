package backup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// pg_dump reads the catalog in the exported snapshot, but several server
// functions it deparses objects with look objects up in the current
// catalog (the syscache): pg_get_function_arguments, _result,
// _identity_arguments and _sqlbody, format_type, pg_get_indexdef,
// pg_get_triggerdef and pg_get_statisticsobjdef read the object itself
// there, and every deparse (pg_get_viewdef, pg_get_ruledef,
// pg_get_constraintdef, pg_get_expr, …) names what it mentions (schemas,
// relations, columns, types, functions, operators, collations, operator
// classes, enum labels) from it. pg_dump locks tables and nothing else:
// an object altered or dropped by DDL committed after the snapshot and
// before pg_dump deparsed it is dumped wrongly ("CREATE FUNCTION
// public.f() RETURNS LANGUAGE sql" for a function dropped meanwhile, a
// function body naming a table the dump lacks) or makes pg_dump fail
// ("could not open relation with OID" for a dropped view), and pg_restore
// of such a base fails.
//
// catalogPrint remembers, in the snapshot, the rows of those catalogs
// that belong to objects pg_dump dumps (schemas other than
// information_schema and the pg_* ones: pg_dump dumps none of those, and
// built-in objects do not change); checkCatalog compares it with the
// current catalog once pg_dump has deparsed everything: at its first
// "dumping contents of table" line (in the custom format every definition
// is in the table of contents, written before any table data), else at
// its end, or when it failed. A row of the snapshot that is gone or has
// another stamp means that an object changed after the snapshot, and
// Take starts over. Rows created later are ignored: the dump does not
// hold their objects.
//
// The stamp is the row's xmin: a transactional update gives the row a new
// one, while VACUUM, ANALYZE and autovacuum update pg_class in place and
// leave it alone. pg_class rows also get new versions for reasons that
// change no definition (TRUNCATE, REFRESH MATERIALIZED VIEW, VACUUM FULL,
// CLUSTER and REINDEX give a new relfilenode; CREATE TRIGGER, RULE and
// POLICY set flags; GRANT, owner and replica identity changes), some of
// them routine, so their stamp hashes the columns the deparse functions
// read instead (name, schema, kind, access method, options). Catalogs
// whose rows pg_dump reads only in its snapshot cannot make it wrong and
// are left out: pg_rewrite (view and rule bodies are read through SPI, in
// the transaction's snapshot; a replaced view is dumped as of the
// snapshot), pg_attrdef and pg_policy (pg_dump reads their expressions
// and hands them to pg_get_expr), pg_cast, pg_inherits, pg_description,
// pg_depend. pg_get_constraintdef reads the constraint in the snapshot
// too, but other deparses name constraints from the current catalog, so
// pg_constraint stays.

// catalogTable is one catalog compared: SQL for its rows of user objects
// (FROM and WHERE, alias x), each row's key and stamp as bigint, and a
// name for messages, read in the snapshot with plain joins (the name
// functions would look a dropped object up in the current catalog). The
// catalogs that name objects come first: the messages name those.
type catalogTable struct {
	name  string
	rows  string
	key   string
	stamp string
	label string
	// skip, in describeChanges, is true for a row that belongs to a
	// changed relation (keys in cls) or type (typ), which is named instead.
	skip string
}

const xminStamp = "x.xmin::text::bigint"

// userSchema is true for the schemas (n) whose objects pg_dump dumps.
const userSchema = ` WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'`

// inSchema joins the schema n of the object whose schema is column.
func inSchema(column string) string {
	return " JOIN pg_namespace n ON n.oid = " + column + userSchema
}

// ofRel joins the relation c (and its schema n) whose oid is column.
func ofRel(column string) string {
	return " JOIN pg_class c ON c.oid = " + column + inSchema("c.relnamespace")
}

var catalogTables = []catalogTable{
	{name: "pg_namespace", rows: "pg_namespace x" + inSchema("x.oid"), key: "x.oid", stamp: xminStamp,
		label: "format('schema %I', x.nspname)"},
	{name: "pg_class", rows: "pg_class x" + inSchema("x.relnamespace"), key: "x.oid",
		stamp: "('x' || left(md5(row(x.relname, x.relnamespace, x.relkind, x.relam, x.reloptions)::text), 16))::bit(64)::bigint",
		label: `format('%s %I.%I', CASE x.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
			WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'I' THEN 'partitioned index' WHEN 'S' THEN 'sequence'
			WHEN 'f' THEN 'foreign table' WHEN 'c' THEN 'composite type' ELSE 'relation' END, n.nspname, x.relname)`,
		skip: "EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = x.oid AND i.indrelid::bigint IN (SELECT k FROM cls))"},
	{name: "pg_proc", rows: "pg_proc x" + inSchema("x.pronamespace"), key: "x.oid", stamp: xminStamp,
		label: `format('%s %I.%I(%s)', CASE x.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
			n.nspname, x.proname, (SELECT string_agg(CASE WHEN tn.nspname = 'pg_catalog' THEN format_type(t.oid, NULL)
				ELSE format('%I.%I', tn.nspname, t.typname) END, ', ' ORDER BY a.i)
			FROM unnest(x.proargtypes) WITH ORDINALITY a(typ, i) JOIN pg_type t ON t.oid = a.typ
			JOIN pg_namespace tn ON tn.oid = t.typnamespace))`},
	{name: "pg_type", rows: "pg_type x" + inSchema("x.typnamespace"), key: "x.oid", stamp: xminStamp,
		label: "format('%s %I.%I', CASE x.typtype WHEN 'd' THEN 'domain' ELSE 'type' END, n.nspname, x.typname)",
		skip:  "x.typrelid::bigint IN (SELECT k FROM cls) OR x.typelem::bigint IN (SELECT k FROM typ)"},
	{name: "pg_constraint", rows: "pg_constraint x" + inSchema("x.connamespace"), key: "x.oid", stamp: xminStamp,
		label: `format('constraint %I on %s', x.conname, COALESCE(
			(SELECT format('%I.%I', cn.nspname, cc.relname) FROM pg_class cc JOIN pg_namespace cn ON cn.oid = cc.relnamespace WHERE cc.oid = x.conrelid),
			(SELECT format('domain %I.%I', tn.nspname, t.typname) FROM pg_type t JOIN pg_namespace tn ON tn.oid = t.typnamespace WHERE t.oid = x.contypid),
			format('schema %I', n.nspname)))`,
		skip: "x.conrelid::bigint IN (SELECT k FROM cls) OR x.contypid::bigint IN (SELECT k FROM typ)"},
	{name: "pg_index", rows: "pg_index x" + ofRel("x.indexrelid"), key: "x.indexrelid", stamp: xminStamp,
		label: "format('index %I.%I', n.nspname, c.relname)",
		skip:  "x.indexrelid::bigint IN (SELECT k FROM cls) OR x.indrelid::bigint IN (SELECT k FROM cls)"},
	{name: "pg_trigger", rows: "pg_trigger x" + ofRel("x.tgrelid"), key: "x.oid", stamp: xminStamp,
		label: "format('trigger %I on %I.%I', x.tgname, n.nspname, c.relname)",
		skip:  "x.tgrelid::bigint IN (SELECT k FROM cls)"},
	{name: "pg_statistic_ext", rows: "pg_statistic_ext x" + inSchema("x.stxnamespace"), key: "x.oid", stamp: xminStamp,
		label: "format('statistics object %I.%I', n.nspname, x.stxname)",
		skip:  "x.stxrelid::bigint IN (SELECT k FROM cls)"},
	{name: "pg_operator", rows: "pg_operator x" + inSchema("x.oprnamespace"), key: "x.oid", stamp: xminStamp,
		label: "format('operator %I.%s', n.nspname, x.oprname)"},
	{name: "pg_opclass", rows: "pg_opclass x" + inSchema("x.opcnamespace"), key: "x.oid", stamp: xminStamp,
		label: "format('operator class %I.%I', n.nspname, x.opcname)"},
	{name: "pg_opfamily", rows: "pg_opfamily x" + inSchema("x.opfnamespace"), key: "x.oid", stamp: xminStamp,
		label: "format('operator family %I.%I', n.nspname, x.opfname)"},
	{name: "pg_collation", rows: "pg_collation x" + inSchema("x.collnamespace"), key: "x.oid", stamp: xminStamp,
		label: "format('collation %I.%I', n.nspname, x.collname)"},
	{name: "pg_enum", rows: "pg_enum x JOIN pg_type t ON t.oid = x.enumtypid" + inSchema("t.typnamespace"),
		key: "x.oid", stamp: xminStamp, label: "format('label %L of type %I.%I', x.enumlabel, n.nspname, t.typname)",
		skip: "x.enumtypid::bigint IN (SELECT k FROM typ)"},
	{name: "pg_attribute", rows: "pg_attribute x" + ofRel("x.attrelid") + " AND x.attnum > 0",
		key: "x.attrelid::bigint * 2048 + x.attnum", stamp: xminStamp,
		label: "format('column %I of %I.%I', x.attname, n.nspname, c.relname)",
		skip:  "x.attrelid::bigint IN (SELECT k FROM cls)"},
}

// catalogQuery reads, per catalog, the keys of the user objects' rows in
// ascending order and their stamps.
var catalogQuery = func() string {
	parts := make([]string, len(catalogTables))
	for i, c := range catalogTables {
		parts[i] = fmt.Sprintf(`SELECT %[1]d, COALESCE(array_agg((%[2]s)::bigint ORDER BY %[2]s), '{}'), COALESCE(array_agg((%[3]s)::bigint ORDER BY %[2]s), '{}') FROM %[4]s`,
			i, c.key, c.stamp, c.rows)
	}
	return strings.Join(parts, "\nUNION ALL\n")
}()

// catalogPrint is the catalog as of the snapshot: for each catalogTables
// entry, the keys of its rows in ascending order and their stamps.
type catalogPrint struct {
	snapshot string
	keys     [][]int64
	stamps   [][]int64
}

// rows counts the rows the print holds.
func (p *catalogPrint) rows() int {
	n := 0
	for _, k := range p.keys {
		n += len(k)
	}
	return n
}

type querier interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}

// readCatalog reads the print through q: in the snapshot transaction it
// is the snapshot's catalog, elsewhere the current one.
func readCatalog(ctx context.Context, q querier, snapshot string) (*catalogPrint, error) {
	p := &catalogPrint{snapshot: snapshot, keys: make([][]int64, len(catalogTables)), stamps: make([][]int64, len(catalogTables))}
	rows, err := q.Query(ctx, catalogQuery)
	if err != nil {
		return nil, fmt.Errorf("read the catalog: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var i int
		var keys, stamps []int64
		if err := rows.Scan(&i, &keys, &stamps); err != nil {
			return nil, fmt.Errorf("read the catalog: %w", err)
		}
		if i < 0 || i >= len(catalogTables) || len(keys) != len(stamps) {
			return nil, fmt.Errorf("read the catalog: unexpected row for catalog %d", i)
		}
		p.keys[i], p.stamps[i] = keys, stamps
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the catalog: %w", err)
	}
	return p, nil
}

// changedSince lists, per catalog, the keys of p's rows that now lacks or
// stamps otherwise.
func (p *catalogPrint) changedSince(now *catalogPrint) [][]int64 {
	out := make([][]int64, len(p.keys))
	for c := range p.keys {
		nk, ns := now.keys[c], now.stamps[c]
		j := 0
		for i, k := range p.keys[c] {
			for j < len(nk) && nk[j] < k {
				j++
			}
			if j == len(nk) || nk[j] != k || ns[j] != p.stamps[c][i] {
				out[c] = append(out[c], k)
			}
		}
	}
	return out
}

// maxNamed bounds how many changed objects a message names.
const maxNamed = 3

// errCatalogChanged says that objects pg_dump dumps changed between the
// snapshot and pg_dump deparsing them; the dump may be wrong, and Take
// starts over.
type errCatalogChanged struct {
	objects []string // named, at most maxNamed
	more    int      // changed but not named (catalog rows when the snapshot was gone)
	dumpErr error    // pg_dump's failure, when it failed
}

func (e *errCatalogChanged) Error() string {
	what := strings.Join(e.objects, ", ")
	verb := "changed or was dropped"
	if len(e.objects) > 1 || e.more > 0 {
		verb = "changed or were dropped"
	}
	if e.more > 0 {
		what += fmt.Sprintf(" and %d more objects", e.more)
	}
	msg := fmt.Sprintf("%s %s after the snapshot", what, verb)
	if e.dumpErr != nil {
		return fmt.Sprintf("%s, and %v", msg, e.dumpErr)
	}
	return msg + " (pg_dump deparses definitions partly from the current catalog, so the dump may hold wrong ones that do not restore)"
}

func (e *errCatalogChanged) Unwrap() error { return e.dumpErr }

func isCatalogChanged(err error) bool {
	var cc *errCatalogChanged
	return errors.As(err, &cc)
}

// catalogConn is what checkCatalog needs of a connection: queries, and a
// transaction to import the snapshot in to name what changed.
type catalogConn interface {
	querier
	BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
}

// checkCatalog compares the snapshot's print with the current catalog and
// returns an errCatalogChanged naming what changed. The exported snapshot
// must still be alive (the slot's connection idle) to name dropped
// objects; otherwise they are named by catalog and key.
func checkCatalog(ctx context.Context, c catalogConn, snap *catalogPrint) error {
	if snap == nil {
		return nil
	}
	now, err := readCatalog(ctx, c, "")
	if err != nil {
		return fmt.Errorf("check the catalog for changes since the snapshot: %w", err)
	}
	changed := snap.changedSince(now)
	if !slices.ContainsFunc(changed, func(keys []int64) bool { return len(keys) > 0 }) {
		return nil
	}
	names, more := describeChanges(ctx, c, snap.snapshot, changed)
	return &errCatalogChanged{objects: names, more: more}
}

// explainDumpFailure checks the catalog when pg_dump failed: an object
// changed since the snapshot is the likely cause ("could not open
// relation with OID" for a view dropped before pg_dump deparsed it), and
// errCatalogChanged then carries pg_dump's error so that Take starts
// over. Other errors come back as they are.
func explainDumpFailure(ctx context.Context, c catalogConn, snap *catalogPrint, err error) error {
	var d *dumpError
	if !errors.As(err, &d) || ctx.Err() != nil {
		return err
	}
	var cc *errCatalogChanged
	if cerr := checkCatalog(ctx, c, snap); errors.As(cerr, &cc) {
		cc.dumpErr = err
		return cc
	}
	return err
}

// describeChanges names up to maxNamed of the changed objects as of the
// snapshot, and counts the others. A row of an object whose relation or
// type is itself among the changed rows (the columns, row type, indexes
// and triggers of a dropped table, the array type of a dropped type) is
// no object of its own. Without the snapshot (gone), rows are named by
// catalog and key.
func describeChanges(ctx context.Context, c catalogConn, snapshot string, changed [][]int64) (names []string, more int) {
	total := 0
	for _, keys := range changed {
		total += len(keys)
	}
	fallback := func() ([]string, int) {
		var out []string
		for i, keys := range changed {
			for _, k := range keys[:min(len(keys), maxNamed-len(out))] {
				out = append(out, fmt.Sprintf("%s row %d", catalogTables[i].name, k))
			}
		}
		return out, total - len(out)
	}
	tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fallback()
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+snapshot+"'"); err != nil {
		return fallback()
	}
	classes, types := changed[catalogIndex("pg_class")], changed[catalogIndex("pg_type")]
	objects := 0
	for i, keys := range changed {
		if len(keys) == 0 {
			continue
		}
		t := catalogTables[i]
		skip := t.skip
		if skip == "" {
			skip = "false"
		}
		rows, err := tx.Query(ctx, fmt.Sprintf(`WITH cls(k) AS (SELECT unnest($2::bigint[])), typ(k) AS (SELECT unnest($3::bigint[]))
			SELECT %[1]s, count(*) OVER () FROM %[2]s AND (%[3]s)::bigint IN (SELECT unnest($1::bigint[])) AND NOT (%[4]s)
			ORDER BY %[3]s LIMIT %[5]d`, t.label, t.rows, t.key, skip, maxNamed), keys, classes, types)
		if err != nil {
			return fallback()
		}
		n := 0 // the catalog's objects, the same on every row
		for rows.Next() {
			var name string
			if err := rows.Scan(&name, &n); err != nil {
				rows.Close()
				return fallback()
			}
			if len(names) < maxNamed {
				names = append(names, name)
			}
		}
		if rows.Err() != nil {
			return fallback()
		}
		objects += n
	}
	if len(names) == 0 {
		return fallback()
	}
	return names, objects - len(names)
}

// catalogIndex is the index of the named catalog in catalogTables.
func catalogIndex(name string) int {
	for i, t := range catalogTables {
		if t.name == name {
			return i
		}
	}
	panic("backup: no catalog " + name)
}
