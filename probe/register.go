package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/config"
)

// Registration lists what registering a source did on it.
type Registration struct {
	Created []string `json:"created,omitempty"`
	Altered []string `json:"altered,omitempty"`
	Adopted []string `json:"adopted,omitempty"`
	// AddedTables were added to an existing explicit-list publication;
	// their changes are in the stream from AddedLSN on.
	AddedTables []string      `json:"added_tables,omitempty"`
	AddedLSN    pglogrepl.LSN `json:"added_lsn,omitempty"`
}

// Changed reports whether registration changed anything on the source.
func (g *Registration) Changed() bool { return len(g.Created)+len(g.Altered) > 0 }

// ErrChecksFailed: registration refused because the probe found a failure.
var ErrChecksFailed = errors.New("probe checks failed")

// FailedChecks returns a one-line summary of failed checks with fixes.
func (r *Report) FailedChecks() string {
	var parts []string
	for _, c := range r.Checks {
		if c.Status == Fail {
			s := c.ID + ": " + c.Finding
			if len(c.Details) > 0 && len(c.Details) <= 5 {
				s += " [" + strings.Join(c.Details, "; ") + "]"
			}
			if c.Fix != "" {
				s += " (fix: " + c.Fix + ")"
			}
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "; ")
}

// Register creates or validates on the source exactly what the report's
// plan announced: REPLICA IDENTITY FULL on the tables the config names,
// the publication (always before any slot, DESIGN 1.1), and the DDL-capture
// objects where allowed. The slot itself is created by the first base
// backup, because its exported snapshot must be used at once (DESIGN 1.2).
// Running it again changes nothing; an existing publication that does not
// match the plan is reported, never replaced.
func Register(ctx context.Context, src *config.Source, r *Report) (*Registration, error) {
	if r.Failed() {
		return nil, fmt.Errorf("source %s not registered, %w: %s", src.Name, ErrChecksFailed, r.FailedChecks())
	}
	conn, err := Connect(ctx, src)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	g := &Registration{}
	pl := &r.Plan
	q := newQuoter(r)

	for _, name := range pl.SetReplicaFull {
		var ident string
		if err := conn.QueryRow(ctx, `SELECT relreplident::text FROM pg_class WHERE oid = $1::regclass`, q.one(name)).Scan(&ident); err != nil {
			return g, fmt.Errorf("read replica identity of %s: %w", name, err)
		}
		if ident == "f" {
			continue
		}
		if _, err := conn.Exec(ctx, "ALTER TABLE "+q.one(name)+" REPLICA IDENTITY FULL"); err != nil {
			return g, fmt.Errorf("set REPLICA IDENTITY FULL on %s: %w", name, err)
		}
		g.Altered = append(g.Altered, name+": REPLICA IDENTITY FULL")
	}

	if err := registerPublication(ctx, conn, pl, q, g); err != nil {
		return g, err
	}

	if pl.DDLCapture {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = $1)`, DDLTrigger).Scan(&exists); err != nil {
			return g, fmt.Errorf("look for event trigger %s: %w", DDLTrigger, err)
		}
		if exists {
			g.Adopted = append(g.Adopted, "event trigger "+DDLTrigger)
		} else {
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				for _, s := range ddlStatements() {
					if _, err := tx.Exec(ctx, s); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return g, fmt.Errorf("create DDL capture: %w", err)
			}
			g.Created = append(g.Created, pl.DDLObjects...)
		}
	}
	return g, nil
}

func registerPublication(ctx context.Context, conn *pgx.Conn, pl *Plan, q quoter, g *Registration) error {
	ep, err := readPublication(ctx, conn, pl.Publication)
	if err != nil {
		return fmt.Errorf("read publication %s: %w", pl.Publication, err)
	}
	pubName := pgx.Identifier{pl.Publication}.Sanitize()
	with := fmt.Sprintf(" WITH (publish_via_partition_root = %v)", pl.ViaPartitionRoot)
	if ep == nil {
		var target string
		switch pl.PublicationForm {
		case FormAllTables:
			target = "FOR ALL TABLES"
		case FormTablesInSchema:
			var qs []string
			for _, s := range pl.Schemas {
				qs = append(qs, pgx.Identifier{s}.Sanitize())
			}
			target = "FOR TABLES IN SCHEMA " + strings.Join(qs, ", ")
		default:
			if len(pl.Tables) > 0 {
				target = "FOR TABLE " + q.list(pl.Tables)
			}
		}
		if _, err := conn.Exec(ctx, "CREATE PUBLICATION "+pubName+" "+target+with); err != nil {
			return fmt.Errorf("create publication %s: %w", pl.Publication, err)
		}
		g.Created = append(g.Created, "publication "+pl.Publication+" "+describeForm(pl))
		return nil
	}
	if why := publicationMismatch(ep, pl); why != "" {
		return fmt.Errorf("publication %s already exists and does not match the plan: %s; drop it if nothing else uses it, or set publication = \"another_name\" in config.toml", pl.Publication, why)
	}
	if pl.PublicationForm == FormTableList {
		have := map[string]bool{}
		for _, t := range ep.Tables {
			have[t] = true
		}
		var missing []string
		for _, t := range pl.Tables {
			if !have[t] {
				missing = append(missing, t)
			}
		}
		if len(missing) > 0 {
			if _, err := conn.Exec(ctx, "ALTER PUBLICATION "+pubName+" ADD TABLE "+q.list(missing)); err != nil {
				return fmt.Errorf("add tables to publication %s: %w", pl.Publication, err)
			}
			g.Altered = append(g.Altered, "publication "+pl.Publication+": added "+strings.Join(missing, ", "))
			g.AddedTables = missing
			if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()`).Scan(&g.AddedLSN); err != nil {
				return fmt.Errorf("read the WAL position: %w", err)
			}
		}
	}
	g.Adopted = append(g.Adopted, "publication "+pl.Publication)
	return nil
}

// quoter quotes the "schema.table" names of a report for SQL, using the
// catalogue's own schema and table (either may contain a dot).
type quoter map[string]Table

func newQuoter(r *Report) quoter {
	q := quoter{}
	for _, t := range r.Tables {
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

func (q quoter) list(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = q.one(n)
	}
	return strings.Join(out, ", ")
}
