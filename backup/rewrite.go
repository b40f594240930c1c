package backup

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// TRUNCATE and the ALTER TABLE forms that rewrite a table are not
// MVCC-safe: they give the table a new file, and a transaction whose
// snapshot predates them reads the new file, not the rows its snapshot
// should see (empty after TRUNCATE). pg_dump holds ACCESS SHARE locks on
// every table from its start to its end, so no rewrite happens while it
// runs, but one committed after the slot's consistent point C and before
// pg_dump locked the table leaves a dump that holds neither the table as
// of C nor as of the rewrite, while the stream replays from C: replay
// then stops at the first UPDATE of a row the dump lacks, or restores
// wrong content. tableFiles remembers each published table's file as of
// the snapshot; checkRewrites compares it with the current file when
// pg_dump's first bytes arrive (its locks are all held by then), so a
// rewrite that waited for pg_dump's locks and ran after it is no false
// alarm.

// tableFile is a published table (a leaf for partitioned tables) and its
// file as of the exported snapshot.
type tableFile struct {
	oid  uint32
	file uint32
	name string
}

// errRewritten says that a published table got a new file between C and
// the end of pg_dump; the dump may not be as of C, and Take retries.
type errRewritten struct{ tables []string }

func (e *errRewritten) Error() string {
	return fmt.Sprintf("table %s was truncated or rewritten (TRUNCATE, VACUUM FULL, CLUSTER or ALTER TABLE) after the snapshot was taken and before pg_dump could lock it, so the dump may not hold it as of the snapshot",
		strings.Join(e.tables, ", "))
}

// tableFiles reads, in the snapshot transaction tx, the file of every
// table the publication decodes (for a partitioned table, its leaves).
// pg_class is read in the snapshot; the list of tables comes from the
// catalog functions, which see the current catalog.
func tableFiles(ctx context.Context, tx pgx.Tx, publication string) ([]tableFile, error) {
	rows, err := tx.Query(ctx, `SELECT c.oid, c.relfilenode, format('%I.%I', n.nspname, c.relname)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND c.relfilenode <> 0 AND c.oid IN (
			SELECT g.relid FROM pg_get_publication_tables($1::text) g
			UNION ALL
			SELECT t.relid FROM pg_get_publication_tables($1::text) g, LATERAL pg_partition_tree(g.relid) t)
		ORDER BY 3`, publication)
	if err != nil {
		return nil, fmt.Errorf("list the published tables: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tableFile, error) {
		var f tableFile
		err := r.Scan(&f.oid, &f.file, &f.name)
		return f, err
	})
	if err != nil {
		return nil, fmt.Errorf("list the published tables: %w", err)
	}
	return out, nil
}

// checkRewrites reports the tables whose file is no longer the one they
// had in the snapshot.
func checkRewrites(ctx context.Context, conn interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, files []tableFile) error {
	if len(files) == 0 {
		return nil
	}
	oids := make([]uint32, len(files))
	for i, f := range files {
		oids[i] = f.oid
	}
	rows, err := conn.Query(ctx, `SELECT o, pg_relation_filenode(o) FROM unnest($1::oid[]) o`, oids)
	if err != nil {
		return fmt.Errorf("check the published tables for rewrites: %w", err)
	}
	now := map[uint32]uint32{}
	for rows.Next() {
		var oid uint32
		var file *uint32
		if err := rows.Scan(&oid, &file); err != nil {
			rows.Close()
			return fmt.Errorf("check the published tables for rewrites: %w", err)
		}
		if file != nil { // nil: dropped since; pg_dump failed or dumped it first
			now[oid] = *file
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("check the published tables for rewrites: %w", err)
	}
	var changed []string
	for _, f := range files {
		if cur, ok := now[f.oid]; ok && cur != f.file {
			changed = append(changed, f.name)
		}
	}
	if len(changed) > 0 {
		return &errRewritten{tables: changed}
	}
	return nil
}

// rewriteAttempts bounds how often Take starts over after a rewrite.
const rewriteAttempts = 3

func isRewritten(err error) bool {
	var rw *errRewritten
	return errors.As(err, &rw)
}
