package restore

import (
	"context"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"
)

// TableCount is one table's row count on the source and on a restored
// target.
type TableCount struct {
	Table  string
	Source int64
	Target int64 // -1 when the table is missing on the target
}

// CompareCounts counts the rows of every table in the source's
// publication, on the source and on the target, for `verify
// --restore-test`. Counts differ legitimately when the source changed
// after the restored point; callers say so.
func CompareCounts(ctx context.Context, source, target *pgx.Conn, publication string) ([]TableCount, error) {
	rows, err := source.Query(ctx, `SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1, 2`, publication)
	if err != nil {
		return nil, fmt.Errorf("list the tables of publication %s: %w", publication, err)
	}
	var tables [][2]string
	for rows.Next() {
		var s, t string
		if err := rows.Scan(&s, &t); err != nil {
			rows.Close()
			return nil, err
		}
		tables = append(tables, [2]string{s, t})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []TableCount
	for _, st := range tables {
		name := pgx.Identifier{st[0], st[1]}.Sanitize()
		c := TableCount{Table: st[0] + "." + st[1], Target: -1}
		if err := source.QueryRow(ctx, "SELECT count(*) FROM "+name).Scan(&c.Source); err != nil {
			return nil, fmt.Errorf("count %s on the source: %w", c.Table, err)
		}
		var exists bool
		if err := target.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil {
			return nil, err
		}
		if exists {
			if err := target.QueryRow(ctx, "SELECT count(*) FROM "+name).Scan(&c.Target); err != nil {
				return nil, fmt.Errorf("count %s on the target: %w", c.Table, err)
			}
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Table < out[j].Table })
	return out, nil
}
