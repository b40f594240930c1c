package probe

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
	// Undecided tables have no usable replica identity and are named in
	// neither replica_identity_full nor exclude_tables: not added.
	Undecided []string
	// NotOwned tables cannot be added by a role that does not own them.
	NotOwned []string
	// LSN is the source's WAL position after the tables were added: their
	// changes are in the stream from there on.
	LSN pglogrepl.LSN
}

// AddNewTables adds tables created since registration to an explicit-list
// publication, as the probe announced ("new tables are added to the
// publication by btfu"): the same include/exclude/replica_identity_full
// rules decide, REPLICA IDENTITY FULL is set only on tables the config
// names. Publications FOR ALL TABLES or FOR TABLES IN SCHEMA take new
// tables by themselves; nothing is done for them.
func AddNewTables(ctx context.Context, src *config.Source) (*NewTables, error) {
	conn, err := Connect(ctx, src)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	out := &NewTables{}
	ep, err := readPublication(ctx, conn, src.Publication)
	if err != nil {
		return nil, fmt.Errorf("read publication %s: %w", src.Publication, err)
	}
	if ep == nil || ep.AllTables {
		return out, nil
	}
	var schemas int
	if err := conn.QueryRow(ctx, `SELECT CASE WHEN current_setting('server_version_num')::int >= 150000
		THEN (SELECT count(*) FROM pg_publication_namespace pn JOIN pg_publication p ON p.oid = pn.pnpubid WHERE p.pubname = $1)
		ELSE 0 END`, src.Publication).Scan(&schemas); err != nil {
		// Before PostgreSQL 15 pg_publication_namespace does not exist
		// (the query fails) and there are no schema publications.
		schemas = 0
	}
	if schemas > 0 {
		return out, nil
	}
	tables, err := listTables(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	var superuser bool
	if err := conn.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&superuser); err != nil {
		return nil, err
	}
	p := &prober{ctx: ctx, src: src, r: &Report{Tables: tables}}
	p.decide()
	have := map[string]bool{}
	for _, t := range ep.Tables {
		have[t] = true
	}
	q := newQuoter(p.r)
	pub := pgx.Identifier{src.Publication}.Sanitize()
	for _, t := range p.r.Tables {
		name := t.QualifiedName()
		if have[name] || (t.Kind == "partition" && ep.ViaRoot) {
			continue
		}
		switch t.Decision {
		case "undecided":
			out.Undecided = append(out.Undecided, name)
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
			if _, err := conn.Exec(ctx, "ALTER TABLE "+q.one(name)+" REPLICA IDENTITY FULL"); err != nil {
				return out, fmt.Errorf("set REPLICA IDENTITY FULL on %s: %w", name, err)
			}
		}
		if _, err := conn.Exec(ctx, "ALTER PUBLICATION "+pub+" ADD TABLE "+q.one(name)); err != nil {
			return out, fmt.Errorf("add %s to publication %s: %w", name, src.Publication, err)
		}
		out.Added = append(out.Added, name)
	}
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()`).Scan(&out.LSN); err != nil {
		return out, err
	}
	return out, nil
}
