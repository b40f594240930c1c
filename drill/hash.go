package drill

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// A table's rows are hashed where they live, by one sequential scan:
// each row's text form (its columns in name order, so a restore that
// recreated the columns in another order still compares) is hashed twice
// with hashtextextended (64 bits, seeds 0 and 1: 128 bits per row), and
// each hash is summed over the table. Sums do not depend on the order
// rows are read in, need no sort and no memory beyond two numerics, and
// send one row per table over the network, whatever the table's size.
// Duplicate rows count as many times as they occur (a multiset hash),
// which REPLICA IDENTITY FULL tables need. hashtextextended is the hash
// of hash partitioning, stable across majors (PostgreSQL 11 on) since
// pg_upgrade keeps hash partitions; on a million rows of 170 bytes it
// costs 1.7 s where md5 of each row cost 4 s.

// TextSettings fix every setting that changes a value's text form, so
// the same rows hash the same on the source and in the scratch database,
// whatever the databases' or roles' defaults.
var TextSettings = []string{
	"SET search_path = pg_catalog",
	"SET DateStyle = 'ISO, MDY'",
	"SET TimeZone = 'UTC'",
	"SET IntervalStyle = 'postgres'",
	"SET extra_float_digits = 1",
	"SET bytea_output = 'hex'",
	"SET lc_monetary = 'C'",
	"SET lc_numeric = 'C'",
	"SET xmloption = 'content'",
	"SET row_security = off",
}

func setSession(ctx context.Context, conn *pgx.Conn) error {
	for _, s := range TextSettings {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// table is one published table as the source's snapshot has it.
type table struct {
	Schema, Name string
	Kind         string   // "r" ordinary (its own rows), "p" partitioned (every partition's)
	Columns      []string // in position order
	Bytes        int64
}

func (t table) String() string { return t.Schema + "." + t.Name }

// digest is a table's row count and hash.
type digest struct {
	Rows int64
	Sum  string
}

type queryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// hashQuery counts and hashes t's rows (see the top of this file).
func hashQuery(t table) string {
	cols := append([]string(nil), t.Columns...)
	sort.Strings(cols)
	fields := make([]string, len(cols))
	for i, c := range cols {
		fields[i] = "r." + pgx.Identifier{c}.Sanitize()
	}
	only := "ONLY "
	if t.Kind == "p" {
		only = ""
	}
	return fmt.Sprintf(`SELECT count(*), coalesce(sum(pg_catalog.hashtextextended(x, 0)), 0)::text || ':' || coalesce(sum(pg_catalog.hashtextextended(x, 1)), 0)::text
		FROM (SELECT ROW(%s)::text AS x FROM %s%s AS r) s`, strings.Join(fields, ", "), only, pgx.Identifier{t.Schema, t.Name}.Sanitize())
}

func hashTable(ctx context.Context, q queryer, t table) (digest, error) {
	var d digest
	if err := q.QueryRow(ctx, hashQuery(t)).Scan(&d.Rows, &d.Sum); err != nil {
		return d, fmt.Errorf("hash %s: %w", t, err)
	}
	return d, nil
}

// publishedTables lists the tables of publication pub with their columns
// and sizes, in the transaction's snapshot.
func publishedTables(ctx context.Context, tx pgx.Tx, pub string) ([]table, error) {
	rows, err := tx.Query(ctx, `SELECT n.nspname::text, c.relname::text, c.relkind::text,
		  coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
		            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{}'),
		  pg_table_size(c.oid)
		FROM pg_publication_tables pt
		JOIN pg_namespace n ON n.nspname = pt.schemaname
		JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
		WHERE pt.pubname = $1 ORDER BY 1, 2`, pub)
	if err != nil {
		return nil, fmt.Errorf("list the tables of publication %s: %w", pub, err)
	}
	defer rows.Close()
	var out []table
	for rows.Next() {
		var t table
		if err := rows.Scan(&t.Schema, &t.Name, &t.Kind, &t.Columns, &t.Bytes); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// tableFile is a table with rows of its own (a published table, or a
// leaf of a published partitioned one) and its file in the snapshot.
type tableFile struct {
	oid  uint32
	file uint32
	name string
}

// tableFiles reads, in the snapshot, the file of every table whose rows
// the hashes read.
func tableFiles(ctx context.Context, tx pgx.Tx, tables []table) ([]tableFile, error) {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = pgx.Identifier{t.Schema, t.Name}.Sanitize()
	}
	// pg_partition_tree lists nothing for a table that is not
	// partitioned: the table itself comes first.
	rows, err := tx.Query(ctx, `WITH t AS (SELECT tn::regclass AS relid FROM unnest($1::text[]) tn)
		SELECT DISTINCT c.oid, c.relfilenode, format('%I.%I', n.nspname, c.relname)
		FROM (SELECT relid FROM t UNION ALL SELECT p.relid FROM t, LATERAL pg_partition_tree(t.relid) p) r
		JOIN pg_class c ON c.oid = r.relid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND c.relfilenode <> 0`, names)
	if err != nil {
		return nil, fmt.Errorf("read the files of the published tables: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tableFile, error) {
		var f tableFile
		err := r.Scan(&f.oid, &f.file, &f.name)
		return f, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the files of the published tables: %w", err)
	}
	return out, nil
}

// lockTimeout bounds the wait for the tables' ACCESS SHARE locks.
const lockTimeout = "30s"

// lockTables takes ACCESS SHARE on every table (a partitioned one's
// partitions too) until the transaction ends.
func lockTables(ctx context.Context, tx pgx.Tx, tables []table) error {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = pgx.Identifier{t.Schema, t.Name}.Sanitize()
	}
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '"+lockTimeout+"'"); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE "+strings.Join(names, ", ")+" IN ACCESS SHARE MODE"); err != nil {
		return fmt.Errorf("lock the published tables (ACCESS SHARE, waiting up to %s): %w", lockTimeout, err)
	}
	_, err := tx.Exec(ctx, "SET LOCAL lock_timeout = 0")
	return err
}

// rewrittenTables names the tables whose current file is not the one
// they had in the snapshot (a TRUNCATE or rewrite committed since).
func rewrittenTables(ctx context.Context, tx pgx.Tx, files []tableFile) ([]string, error) {
	oids := make([]uint32, len(files))
	for i, f := range files {
		oids[i] = f.oid
	}
	rows, err := tx.Query(ctx, `SELECT o, pg_relation_filenode(o) FROM unnest($1::oid[]) o`, oids)
	if err != nil {
		return nil, fmt.Errorf("check the published tables for rewrites: %w", err)
	}
	now := map[uint32]uint32{}
	for rows.Next() {
		var oid uint32
		var file *uint32
		if err := rows.Scan(&oid, &file); err != nil {
			rows.Close()
			return nil, err
		}
		if file != nil {
			now[oid] = *file
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("check the published tables for rewrites: %w", err)
	}
	var out []string
	for _, f := range files {
		if cur, ok := now[f.oid]; ok && cur != f.file {
			out = append(out, f.name)
		}
	}
	return out, nil
}

// unpublished is a user table the publication leaves out, and why.
type unpublished struct {
	Table  string
	Reason string
}

// unpublishedTables lists the user tables with rows of their own that
// the publication does not hold (neither itself nor through a published
// ancestor), with the catalog's reason: unlogged, or no usable replica
// identity; others were left out by include_tables/exclude_tables.
func unpublishedTables(ctx context.Context, tx pgx.Tx, pub string) ([]unpublished, error) {
	rows, err := tx.Query(ctx, `WITH pub AS (
		  SELECT c.oid FROM pg_publication_tables pt JOIN pg_namespace n ON n.nspname = pt.schemaname
		  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename WHERE pt.pubname = $1)
		SELECT n.nspname || '.' || c.relname, c.relpersistence = 'u',
		  CASE c.relreplident
		    WHEN 'f' THEN true
		    WHEN 'd' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
		    WHEN 'i' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
		    ELSE false END
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND c.relpersistence <> 't'
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'btfu', 'pg_toast') AND n.nspname !~ '^pg_(toast_)?temp_'
		  AND c.oid NOT IN (SELECT oid FROM pub)
		  AND NOT EXISTS (SELECT 1 FROM pg_partition_ancestors(c.oid) a WHERE a.relid IN (SELECT oid FROM pub))
		ORDER BY 1`, pub)
	if err != nil {
		return nil, fmt.Errorf("list the tables publication %s leaves out: %w", pub, err)
	}
	defer rows.Close()
	var out []unpublished
	for rows.Next() {
		var name string
		var unlogged, identity bool
		if err := rows.Scan(&name, &unlogged, &identity); err != nil {
			return nil, err
		}
		why := "not in the publication (include_tables/exclude_tables)"
		switch {
		case unlogged:
			why = "unlogged: its changes are not in the WAL, so not in the stream"
		case !identity:
			why = "no primary key or replica identity (tables_without_key = \"leave_out\")"
		}
		out = append(out, unpublished{Table: name, Reason: why})
	}
	return out, rows.Err()
}
