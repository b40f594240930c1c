package corpus

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/btfu/btfu/drill"
	"github.com/jackc/pgx/v5"
)

// Snapshot is what a database holds, for comparing a restore with its
// source: a hash of every table's rows with the table's shape and the
// catalog facts that explain a table left out, the names of its objects,
// and its sequences' values.
type Snapshot struct {
	LSN       string // pg_current_wal_lsn() when taken (on a source)
	Took      time.Duration
	Tables    map[string]TableState // schema.table
	Objects   map[string][]string   // kind -> sorted names
	Sequences map[string]*int64     // schema.sequence -> last_value (nil: never called)
}

// TableState is one table: its columns in position order, its rows (their
// count and the md5 of their text forms, each row with its columns in
// name order, sorted and joined, so rows compare by column name whatever
// the positions), and what a restore's LEFT OUT reason is checked
// against; Err when the rows could not be read.
type TableState struct {
	Kind string // "r" ordinary (rows of the table only), "p" partitioned (every partition's rows)
	Rows int64
	Hash string
	Err  string
	// Columns are "name type" in position order (dropped columns left
	// out): the same set in another order is a table whose rows are equal
	// by name but not by position.
	Columns []string
	// Persistence is relpersistence: "p" logged, "u" unlogged.
	Persistence string
	// ReplIdent is relreplident: "d" default (primary key), "n" nothing,
	// "f" full, "i" index.
	ReplIdent string
	// HasIdentity: the replica identity is usable (FULL, a primary key
	// under DEFAULT, or an index under USING INDEX).
	HasIdentity bool
	// Parents are the tables it inherits from (not a partition's parent).
	Parents []string
	// Ancestors are a partition's partitioned tables, up to the root.
	Ancestors []string
}

// userNamespace leaves out the catalogs, btfu's own schema, TOAST and
// temporary schemas.
const userNamespace = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'btfu', 'pg_toast') AND n.nspname !~ '^pg_(toast_)?temp_'`

// objectQueries name the objects compared by presence. Names are
// schema-qualified; with search_path = pg_catalog the argument types of
// functions are too, so they read the same in source and restore.
var objectQueries = map[string]string{
	"tables": `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND ` + userNamespace,
	"views": `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'v' AND c.relpersistence <> 't' AND ` + userNamespace,
	"materialized views": `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'm' AND ` + userNamespace,
	"sequences": `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'S' AND c.relpersistence <> 't' AND ` + userNamespace,
	"indexes": `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('i', 'I') AND c.relpersistence <> 't' AND ` + userNamespace,
	"foreign tables": `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'f' AND ` + userNamespace,
	"functions": `SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ` + userNamespace,
	// Types a user made: not the array type of each type, nor the row
	// type of each table, view or sequence (composite types stay).
	"types": `SELECT n.nspname || '.' || t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		WHERE ` + userNamespace + `
		  AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
		  AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')`,
	"triggers": `SELECT n.nspname || '.' || c.relname || '.' || tg.tgname FROM pg_trigger tg
		JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE NOT tg.tgisinternal AND ` + userNamespace,
	"rules": `SELECT n.nspname || '.' || c.relname || '.' || r.rulename FROM pg_rewrite r
		JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE r.rulename <> '_RETURN' AND ` + userNamespace,
	"policies": `SELECT n.nspname || '.' || c.relname || '.' || p.polname FROM pg_policy p
		JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE ` + userNamespace,
}

// ObjectKinds is the order kinds are reported in.
var ObjectKinds = []string{"tables", "views", "materialized views", "sequences", "indexes", "foreign tables", "functions", "types", "triggers", "rules", "policies"}

// sessionSettings fix every setting that changes a value's text form
// (drill's), so the same rows hash the same in any database, and bound
// each statement.
var sessionSettings = append([]string{"SET statement_timeout = '5min'"}, drill.TextSettings...)

// TakeSnapshot reads db (a DSN) in one repeatable-read transaction, so
// the LSN, the hashes and the names are of one moment.
func TakeSnapshot(ctx context.Context, dsn string) (*Snapshot, error) {
	start := time.Now()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("snapshot: connect: %w", err)
	}
	defer conn.Close(context.Background())
	for _, s := range sessionSettings {
		if _, err := conn.Exec(ctx, s); err != nil {
			return nil, fmt.Errorf("snapshot: %s: %w", s, err)
		}
	}
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		return nil, fmt.Errorf("snapshot: begin: %w", err)
	}
	defer conn.Exec(context.Background(), "ROLLBACK")
	s := &Snapshot{Tables: map[string]TableState{}, Objects: map[string][]string{}, Sequences: map[string]*int64{}}
	if err := conn.QueryRow(ctx, "SELECT CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_current_wal_lsn()::text END").Scan(&s.LSN); err != nil {
		return nil, fmt.Errorf("snapshot: current LSN: %w", err)
	}
	for kind, q := range objectQueries {
		names, err := queryStrings(ctx, conn, q)
		if err != nil {
			return nil, fmt.Errorf("snapshot: %s: %w", kind, err)
		}
		s.Objects[kind] = names
	}
	rels, err := readTables(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("snapshot: tables: %w", err)
	}
	for i, r := range rels {
		st := r.state
		sp := fmt.Sprintf("t%d", i)
		if _, err := conn.Exec(ctx, "SAVEPOINT "+sp); err != nil {
			return nil, fmt.Errorf("snapshot: savepoint: %w", err)
		}
		if err := conn.QueryRow(ctx, rowsQuery(r.schema, r.name, r.state.Kind, r.names)).Scan(&st.Rows, &st.Hash); err != nil {
			st.Err = err.Error()
			if _, err := conn.Exec(ctx, "ROLLBACK TO SAVEPOINT "+sp); err != nil {
				return nil, fmt.Errorf("snapshot: rollback to savepoint: %w", err)
			}
		}
		s.Tables[r.schema+"."+r.name] = st
	}
	seqs, err := conn.Query(ctx, `SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences n
		WHERE n.schemaname NOT IN ('pg_catalog', 'information_schema', 'btfu', 'pg_toast') AND n.schemaname !~ '^pg_(toast_)?temp_'`)
	if err != nil {
		return nil, fmt.Errorf("snapshot: sequences: %w", err)
	}
	for seqs.Next() {
		var name string
		var v *int64
		if err := seqs.Scan(&name, &v); err != nil {
			seqs.Close()
			return nil, err
		}
		s.Sequences[name] = v
	}
	seqs.Close()
	if err := seqs.Err(); err != nil {
		return nil, fmt.Errorf("snapshot: sequences: %w", err)
	}
	s.Took = time.Since(start)
	return s, nil
}

// tableRow is one table as readTables finds it.
type tableRow struct {
	schema, name string
	names        []string // column names in position order
	state        TableState
}

// tablesQuery reads every user table with its columns and the catalog
// facts TableState keeps.
const tablesQuery = `SELECT n.nspname, c.relname, c.relkind::text, c.relpersistence::text, c.relreplident::text,
	  CASE c.relreplident
	    WHEN 'f' THEN true
	    WHEN 'd' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
	    WHEN 'i' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
	    ELSE false END,
	  coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
	            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{}'),
	  coalesce((SELECT array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) FROM pg_attribute a
	            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{}'),
	  coalesce((SELECT array_agg(pn.nspname || '.' || p.relname ORDER BY i.inhseqno) FROM pg_inherits i
	            JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
	            WHERE i.inhrelid = c.oid AND NOT c.relispartition), '{}'),
	  coalesce((SELECT array_agg(an.nspname || '.' || a.relname ORDER BY x.o) FROM pg_partition_ancestors(c.oid) WITH ORDINALITY x(relid, o)
	            JOIN pg_class a ON a.oid = x.relid JOIN pg_namespace an ON an.oid = a.relnamespace
	            WHERE x.relid <> c.oid), '{}')
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND ` + userNamespace + ` ORDER BY 1, 2`

func readTables(ctx context.Context, conn *pgx.Conn) ([]tableRow, error) {
	rows, err := conn.Query(ctx, tablesQuery)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []tableRow
	for rows.Next() {
		var r tableRow
		var types []string
		st := &r.state
		if err := rows.Scan(&r.schema, &r.name, &st.Kind, &st.Persistence, &st.ReplIdent, &st.HasIdentity, &r.names, &types, &st.Parents, &st.Ancestors); err != nil {
			return nil, err
		}
		for i, n := range r.names {
			st.Columns = append(st.Columns, n+" "+types[i])
		}
		if len(st.Parents) == 0 {
			st.Parents = nil
		}
		if len(st.Ancestors) == 0 {
			st.Ancestors = nil
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// rowsQuery counts and hashes a table's rows: each row's text form with
// its columns in name order (byte order of the names), the rows sorted
// (C collation) and joined. An ordinary table's rows are its own
// (inheritance children are hashed themselves); a partitioned table has
// no rows of its own, so its hash covers its partitions'.
func rowsQuery(schema, name, kind string, columns []string) string {
	sorted := append([]string(nil), columns...)
	sort.Strings(sorted)
	fields := make([]string, len(sorted))
	for i, c := range sorted {
		fields[i] = "r." + pgx.Identifier{c}.Sanitize()
	}
	only := "ONLY "
	if kind == "p" {
		only = ""
	}
	return fmt.Sprintf(`SELECT count(*), md5(coalesce(string_agg(x, E'\n' ORDER BY x COLLATE "C"), '')) FROM (SELECT ROW(%s)::text AS x FROM %s%s AS r) s`,
		strings.Join(fields, ", "), only, pgx.Identifier{schema, name}.Sanitize())
}

func queryStrings(ctx context.Context, conn *pgx.Conn, q string) ([]string, error) {
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	sort.Strings(out)
	return out, err
}
