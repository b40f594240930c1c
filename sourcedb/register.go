package sourcedb

import (
	"context"
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

// Register creates or validates on the source exactly what the probe's
// plan announced (register only a plan whose probe found no failure:
// probe.Report.Registrable): REPLICA IDENTITY FULL on the tables the config names,
// the publication (always before any slot, DESIGN 1.1), and the DDL-capture
// objects where allowed. The slot itself is created by the first base
// backup, because its exported snapshot must be used at once (DESIGN 1.2).
// Running it again changes nothing; an existing publication that does not
// match the plan is reported, never replaced.
func Register(ctx context.Context, src *config.Source, pl *Plan, tables []Table) (*Registration, error) {
	conn, err := Connect(ctx, src)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	g := &Registration{}
	q := newQuoter(tables)
	// btfu's own statements are not the application's DDL: the capture
	// trigger leaves them alone.
	if _, err := conn.Exec(ctx, "SET "+InternalSetting+" = on"); err != nil {
		return g, fmt.Errorf("set %s: %w", InternalSetting, err)
	}
	if pl.DDLCapture {
		if err := installDDLCapture(ctx, conn, src, pl, g); err != nil {
			return g, err
		}
	}
	for _, name := range pl.SetReplicaFull {
		changed, err := setReplicaFull(ctx, conn, q.one(name), pl.DDLCapture)
		if err != nil {
			return g, fmt.Errorf("set REPLICA IDENTITY FULL on %s: %w", name, err)
		}
		if changed {
			g.Altered = append(g.Altered, name+": REPLICA IDENTITY FULL")
		}
	}
	if err := registerPublication(ctx, conn, pl, q, g); err != nil {
		return g, err
	}
	return g, nil
}

// installDDLCapture creates the DDL-capture objects, or brings them up to
// date when the functions differ from this btfu's (an older btfu, or a
// config whose table rules changed).
func installDDLCapture(ctx context.Context, conn *pgx.Conn, src *config.Source, pl *Plan, g *Registration) error {
	var exists, current bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = $1)`, DDLTrigger).Scan(&exists); err != nil {
		return fmt.Errorf("look for event trigger %s: %w", DDLTrigger, err)
	}
	if exists {
		other, err := OtherCapturePublication(ctx, conn, src)
		if err != nil {
			return err
		}
		if other != "" {
			return CaptureServesOtherErr(conn.Config().Database, other, src.Publication)
		}
		// Current when the three triggers exist, fire always, and every
		// function is this btfu's, for this config.
		want := map[string]string{DDLFunction: ddlFunctionSQL(), DDLCore: ddlCoreSQL(src), DDLStartFunction: ddlStartFunctionSQL(), DDLStartCore: ddlStartCoreSQL(src),
			DDLDropFunction: ddlDropFunctionSQL()}
		var names, bodies []string
		for n, sql := range want {
			names, bodies = append(names, strings.TrimPrefix(n, DDLSchema+".")), append(bodies, functionBody(sql))
		}
		err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_event_trigger WHERE evtname IN ($4, $5, $6) AND evtenabled = 'A') = 3
			AND (SELECT evttags FROM pg_event_trigger WHERE evtname = $5) = ARRAY[`+startTags+`]
			AND (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN unnest($2::text[], $3::text[]) w(name, body) ON w.name = p.proname AND w.body = p.prosrc
				WHERE n.nspname = $1) = cardinality($2::text[])`,
			DDLSchema, names, bodies, DDLTrigger, DDLStartTrigger, DDLDropTrigger).Scan(&current)
		if err != nil {
			return fmt.Errorf("read DDL capture functions: %w", err)
		}
		if current {
			g.Adopted = append(g.Adopted, "event trigger "+DDLTrigger)
			return nil
		}
	}
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, s := range DDLStatements(src) {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create DDL capture: %w", err)
	}
	if exists {
		g.Altered = append(g.Altered, "DDL capture functions updated")
	} else {
		g.Created = append(g.Created, pl.DDLObjects...)
	}
	return nil
}

// functionBody is the text between the $btfu$ quotes of a CREATE FUNCTION:
// what pg_proc.prosrc holds.
func functionBody(create string) string {
	_, rest, _ := strings.Cut(create, "$btfu$")
	body, _, _ := strings.Cut(rest, "$btfu$")
	return body
}

// setReplicaFull sets REPLICA IDENTITY FULL on a table (quoted name),
// recording its identity before where DDL capture keeps that list.
func setReplicaFull(ctx context.Context, conn *pgx.Conn, table string, record bool) (bool, error) {
	var ident string
	if err := conn.QueryRow(ctx, `SELECT relreplident::text FROM pg_class WHERE oid = $1::regclass`, table).Scan(&ident); err != nil {
		return false, err
	}
	if ident == "f" {
		return false, nil
	}
	return true, pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if record {
			if _, err := tx.Exec(ctx, `INSERT INTO `+IdentityTable+` (relid, schema_name, table_name, previous)
				SELECT c.oid, n.nspname, c.relname, $2 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::regclass
				ON CONFLICT (relid) DO NOTHING`, table, ident); err != nil {
				return err
			}
		}
		// A partitioned table's UPDATEs are checked on its partitions.
		rows, err := tx.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_partition_tree($1::regclass) t
			JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relreplident <> 'f'`, table)
		if err != nil {
			return err
		}
		parts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if len(parts) == 0 {
			parts = []string{table}
		}
		for _, t := range parts {
			if _, err := tx.Exec(ctx, "ALTER TABLE "+t+" REPLICA IDENTITY FULL"); err != nil {
				return err
			}
		}
		return nil
	})
}
