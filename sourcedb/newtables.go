package sourcedb

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/config"
)

// NewTables is what AddNewTables did.
type NewTables struct {
	Added []string // schema.table added to the publication
	// Undecided tables have no usable replica identity, are named in
	// neither replica_identity_full nor exclude_tables, and
	// tables_without_key is "leave_out": not published, not backed up.
	Undecided []string
	// Dropped tables were published but lost their usable replica
	// identity (or the config now leaves them out): they left the
	// publication, so the application's UPDATE and DELETE keep working.
	Dropped []string
	// NotOwned tables cannot be added by a role that does not own them.
	NotOwned []string
	// Unlogged tables are not in the WAL, so not in the stream: a restore
	// holds them as the base backup had them.
	Unlogged []string
	// Tables are all the database's tables, as listed (nil when the
	// publication is not an explicit list) at ListedLSN or later: a table
	// created by a transaction that committed before ListedLSN is there.
	Tables    []string
	ListedLSN pglogrepl.LSN
	// LSN is the source's WAL position after the tables were added: their
	// changes are in the stream from there on.
	LSN pglogrepl.LSN
}

// AddNewTables keeps the publication's table list to the config's rules
// for tables created or changed since registration (where DDL capture is
// installed its trigger does this in the DDL's own transaction; this check
// catches the rest): tables with a usable replica identity join (ONLY, so
// an inheritance parent does not bring its children), REPLICA IDENTITY
// FULL is set where the config says so, and a published table that lost
// its identity leaves. Publications FOR ALL TABLES or FOR TABLES IN SCHEMA
// (registered by an older btfu) are moved to an explicit list by
// registration at start; nothing is done for them here.
func AddNewTables(ctx context.Context, src *config.Source) (*NewTables, error) {
	conn, err := Connect(ctx, src)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SET "+InternalSetting+" = on"); err != nil {
		return nil, err
	}
	// Never wait long behind the application's DDL on the publication.
	if _, err := conn.Exec(ctx, "SET lock_timeout = '2s'"); err != nil {
		return nil, err
	}
	out := &NewTables{}
	ep, err := ReadPublication(ctx, conn, src.Publication)
	if err != nil {
		return nil, fmt.Errorf("read publication %s: %w", src.Publication, err)
	}
	if ep == nil || ep.AllTables || ep.Schemas > 0 {
		return out, nil
	}
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()`).Scan(&out.ListedLSN); err != nil {
		return nil, err
	}
	tables, err := ListTables(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	var superuser, capture bool
	if err := conn.QueryRow(ctx, `SELECT rolsuper, to_regclass($1) IS NOT NULL FROM pg_roles WHERE rolname = current_user`, IdentityTable).Scan(&superuser, &capture); err != nil {
		return nil, err
	}
	out.Tables = make([]string, 0, len(tables))
	for _, t := range tables {
		out.Tables = append(out.Tables, t.QualifiedName())
	}
	// User tables the listing leaves aside (moved into pg_catalog or
	// information_schema, made members of an extension) still exist: a
	// table is dropped only when it is in neither list.
	rows, err := conn.Query(ctx, `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND c.oid >= 16384
		  AND (n.nspname IN ('pg_catalog', 'information_schema')
		       OR EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'))`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	aside, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	out.Tables = append(out.Tables, aside...)
	Decide(src, tables)
	have := map[string]bool{}
	for _, t := range ep.Tables {
		have[t] = true
	}
	q := newQuoter(tables)
	pub := pgx.Identifier{src.Publication}.Sanitize()
	for _, t := range tables {
		name := t.QualifiedName()
		// A partition of a published root is published through it.
		if t.Kind == "partition" && (ep.ViaRoot || have[t.Root]) {
			continue
		}
		if have[name] {
			if t.Decision == "publish" {
				continue
			}
			if t.Decision == "set_full" {
				if _, err := setReplicaFull(ctx, conn, q.one(name), capture); err != nil {
					return out, fmt.Errorf("set REPLICA IDENTITY FULL on %s: %w", name, err)
				}
				continue
			}
			// Published, but no longer fit: out it goes, before the
			// application's next UPDATE fails on it.
			if _, err := conn.Exec(ctx, "ALTER PUBLICATION "+pub+" DROP TABLE ONLY "+q.one(name)); err != nil {
				return out, fmt.Errorf("drop %s from publication %s: %w", name, src.Publication, err)
			}
			out.Dropped = append(out.Dropped, name)
			if t.Decision == "undecided" {
				out.Undecided = append(out.Undecided, name)
			}
			continue
		}
		switch t.Decision {
		case "undecided":
			out.Undecided = append(out.Undecided, name)
			continue
		case "not_logged":
			out.Unlogged = append(out.Unlogged, name)
			continue
		case "publish", "set_full":
		default:
			continue
		}
		if !t.Owned && !superuser {
			out.NotOwned = append(out.NotOwned, name)
			continue
		}
		if t.Decision == "set_full" {
			if _, err := setReplicaFull(ctx, conn, q.one(name), capture); err != nil {
				return out, fmt.Errorf("set REPLICA IDENTITY FULL on %s: %w", name, err)
			}
		}
		if _, err := conn.Exec(ctx, "ALTER PUBLICATION "+pub+" ADD TABLE ONLY "+q.one(name)); err != nil {
			return out, fmt.Errorf("add %s to publication %s: %w", name, src.Publication, err)
		}
		out.Added = append(out.Added, name)
	}
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()`).Scan(&out.LSN); err != nil {
		return out, err
	}
	return out, nil
}
