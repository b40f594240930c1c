package sourcedb

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The publication: reading one that exists, and creating or bringing it
// to the plan's table list at registration (DESIGN 6). Its periodic
// upkeep, tables that appeared since, is newtables.go.

// Publication describes a publication already on the source.
type Publication struct {
	AllTables bool
	ViaRoot   bool
	Schemas   int // FOR TABLES IN SCHEMA entries (PostgreSQL 15+)
	Tables    []string
}

// ReadPublication reads publication name; nil when it does not exist.
func ReadPublication(ctx context.Context, conn *pgx.Conn, name string) (*Publication, error) {
	var ep Publication
	err := conn.QueryRow(ctx, `SELECT puballtables, pubviaroot FROM pg_publication WHERE pubname = $1`, name).Scan(&ep.AllTables, &ep.ViaRoot)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, `SELECT n.nspname || '.' || c.relname FROM pg_publication_rel pr JOIN pg_publication pb ON pb.oid = pr.prpubid
		JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE pb.pubname = $1 ORDER BY 1`, name)
	if err != nil {
		return nil, err
	}
	ep.Tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	var hasNamespaces bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('pg_catalog.pg_publication_namespace') IS NOT NULL`).Scan(&hasNamespaces); err != nil {
		return nil, err
	}
	if hasNamespaces {
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_publication_namespace pn JOIN pg_publication p ON p.oid = pn.pnpubid WHERE p.pubname = $1`, name).Scan(&ep.Schemas); err != nil {
			return nil, err
		}
	}
	return &ep, nil
}

// registerPublication creates the plan's publication, or brings an
// existing one to the plan's table list and partition-root setting,
// recording what it did in g.
func registerPublication(ctx context.Context, conn *pgx.Conn, pl *Plan, q quoter, g *Registration) error {
	ep, err := ReadPublication(ctx, conn, pl.Publication)
	if err != nil {
		return fmt.Errorf("read publication %s: %w", pl.Publication, err)
	}
	pubName := pgx.Identifier{pl.Publication}.Sanitize()
	create := func(via bool) string {
		target := ""
		if len(pl.Tables) > 0 {
			target = " FOR TABLE " + q.only(pl.Tables)
		}
		return "CREATE PUBLICATION " + pubName + target + fmt.Sprintf(" WITH (publish_via_partition_root = %v)", via)
	}
	if ep == nil {
		if _, err := conn.Exec(ctx, create(pl.ViaPartitionRoot)); err != nil {
			return fmt.Errorf("create publication %s: %w", pl.Publication, err)
		}
		g.Created = append(g.Created, "publication "+pl.Publication+" "+DescribeForm(pl))
		return nil
	}
	if ep.AllTables || ep.Schemas > 0 {
		// Registered by an older btfu: FOR ALL TABLES or FOR TABLES IN
		// SCHEMA publish every new table, usable or not. Replace it by
		// the explicit list in one transaction, so every change is decoded
		// through exactly one of the two: no gap, and no table without a
		// usable identity stays published. publish_via_partition_root is
		// kept, so relation names in the stream do not change.
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '10s'"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "DROP PUBLICATION "+pubName); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, create(pl.ViaPartitionRoot))
			return err
		})
		if err != nil {
			return fmt.Errorf("move publication %s to an explicit table list: %w", pl.Publication, err)
		}
		what := fmt.Sprintf("publication %s: moved from %s to an explicit list of %d table(s)", pl.Publication, map[bool]string{true: "FOR ALL TABLES", false: "FOR TABLES IN SCHEMA"}[ep.AllTables], len(pl.Tables))
		if len(pl.Undecided) > 0 {
			what += "; left out (no usable replica identity): " + strings.Join(pl.Undecided, ", ")
		}
		g.Altered = append(g.Altered, what)
		return nil
	}
	if ep.ViaRoot != pl.ViaPartitionRoot {
		// An older btfu published through partition roots, and then a
		// TRUNCATE of one partition is not decoded.
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s SET (publish_via_partition_root = %v)", pubName, pl.ViaPartitionRoot)); err != nil {
			return fmt.Errorf("set publish_via_partition_root of publication %s: %w", pl.Publication, err)
		}
		g.Altered = append(g.Altered, fmt.Sprintf("publication %s: publish_via_partition_root = %v", pl.Publication, pl.ViaPartitionRoot))
	}
	have, want := map[string]bool{}, map[string]bool{}
	for _, t := range ep.Tables {
		have[t] = true
	}
	for _, t := range pl.Tables {
		want[t] = true
	}
	// Tables the plan leaves out (they lost their replica identity, or
	// the config now excludes them) leave the publication.
	var extra []string
	for _, t := range ep.Tables {
		if !want[t] {
			extra = append(extra, t)
		}
	}
	if len(extra) > 0 {
		if _, err := conn.Exec(ctx, "ALTER PUBLICATION "+pubName+" DROP TABLE "+q.only(extra)); err != nil {
			return fmt.Errorf("drop tables the plan leaves out from publication %s: %w", pl.Publication, err)
		}
		g.Altered = append(g.Altered, "publication "+pl.Publication+": dropped "+strings.Join(extra, ", ")+" (left out by the plan)")
	}
	var missing []string
	for _, t := range pl.Tables {
		if !have[t] {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		if _, err := conn.Exec(ctx, "ALTER PUBLICATION "+pubName+" ADD TABLE "+q.only(missing)); err != nil {
			return fmt.Errorf("add tables to publication %s: %w", pl.Publication, err)
		}
		g.Altered = append(g.Altered, "publication "+pl.Publication+": added "+strings.Join(missing, ", "))
		g.AddedTables = missing
		if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()`).Scan(&g.AddedLSN); err != nil {
			return fmt.Errorf("read the WAL position: %w", err)
		}
	}
	g.Adopted = append(g.Adopted, "publication "+pl.Publication)
	return nil
}

// quoter quotes the "schema.table" names of listed tables for SQL, using the
// catalogue's own schema and table (either may contain a dot).
type quoter map[string]Table

func newQuoter(tables []Table) quoter {
	q := quoter{}
	for _, t := range tables {
		q[t.QualifiedName()] = t
	}
	return q
}

func (q quoter) one(name string) string {
	if t, ok := q[name]; ok {
		return pgx.Identifier{t.Schema, t.Name}.Sanitize()
	}
	schema, table, _ := strings.Cut(name, ".")
	return pgx.Identifier{schema, table}.Sanitize()
}

// only lists tables for a publication, each with ONLY: without it an
// inheritance parent brings its children, usable identity or not.
func (q quoter) only(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "ONLY " + q.one(n)
	}
	return strings.Join(out, ", ")
}
