package sourcedb

import (
	"context"
	"path"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/config"
)

// Table is a user table of the source and what btfu will do with it.
type Table struct {
	Schema          string `json:"schema"`
	Name            string `json:"name"`
	Kind            string `json:"kind"`           // table, partitioned, partition
	Root            string `json:"root,omitempty"` // a partition's partition tree root, schema.name
	Unlogged        bool   `json:"unlogged,omitempty"`
	ReplicaIdentity string `json:"replica_identity"` // default, full, index, nothing
	HasPrimaryKey   bool   `json:"has_primary_key"`
	UsableIdentity  bool   `json:"usable_identity"`
	Generated       bool   `json:"generated_columns,omitempty"`
	Owned           bool   `json:"owned"` // the role owns it (may add it to a publication)
	Bytes           int64  `json:"bytes"`
	RowEstimate     int64  `json:"row_estimate"`
	// Decision: publish, exclude (config), set_full (config asks for
	// REPLICA IDENTITY FULL), undecided (no usable identity, no decision),
	// not_logged (unlogged: nothing to decode).
	Decision string `json:"decision"`
}

// QualifiedName is schema.name, unquoted.
func (t Table) QualifiedName() string { return t.Schema + "." + t.Name }

// ListTables lists the database's user tables with what the probe needs
// to decide about them.
func ListTables(ctx context.Context, conn *pgx.Conn) ([]Table, error) {
	rows, err := conn.Query(ctx, `
SELECT n.nspname, c.relname, c.relkind::text, c.relispartition, c.relpersistence = 'u', c.relreplident::text,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident AND i.indisvalid),
       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attgenerated <> '' AND NOT a.attisdropped),
       pg_has_role(c.relowner, 'USAGE'),
       CASE WHEN c.relkind = 'p' THEN 0 ELSE coalesce(pg_total_relation_size(c.oid), 0) END, -- NULL: dropped meanwhile
       greatest(c.reltuples, 0)::bigint,
       -- NULL when the partition was detached or its root dropped meanwhile
       CASE WHEN c.relispartition THEN coalesce((SELECT rn.nspname || '.' || r.relname FROM pg_class r JOIN pg_namespace rn ON rn.oid = r.relnamespace WHERE r.oid = pg_partition_root(c.oid)), '') ELSE '' END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', '`+DDLSchema+`') AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Table
	for rows.Next() {
		var t Table
		var kind, ident string
		var isPartition, hasIdentIndex bool
		if err := rows.Scan(&t.Schema, &t.Name, &kind, &isPartition, &t.Unlogged, &ident, &t.HasPrimaryKey, &hasIdentIndex, &t.Generated, &t.Owned, &t.Bytes, &t.RowEstimate, &t.Root); err != nil {
			return nil, err
		}
		t.Kind = map[bool]string{true: "partition", false: "table"}[isPartition]
		if kind == "p" {
			t.Kind = "partitioned"
		}
		t.ReplicaIdentity = map[string]string{"d": "default", "f": "full", "i": "index", "n": "nothing"}[ident]
		// A partitioned table's UPDATEs are checked on its partitions:
		// only a primary key (which every partition has) makes it safe.
		t.UsableIdentity = ident == "f" || (ident == "d" && t.HasPrimaryKey) || (ident == "i" && hasIdentIndex)
		if kind == "p" {
			t.UsableIdentity = t.HasPrimaryKey
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// MatchAny reports whether schema.table matches one of the patterns.
func MatchAny(patterns []string, name string) bool {
	for _, pat := range patterns {
		if ok, _ := path.Match(pat, name); ok {
			return true
		}
	}
	return false
}

// Decide fills each table's Decision from the source's config: the rules
// that say which tables the publication holds.
func Decide(src *config.Source, tables []Table) {
	for i := range tables {
		t := &tables[i]
		name := t.QualifiedName()
		switch {
		case t.Unlogged:
			t.Decision = "not_logged"
		case len(src.IncludeTables) > 0 && !MatchAny(src.IncludeTables, name), MatchAny(src.ExcludeTables, name):
			t.Decision = "exclude"
		case !t.UsableIdentity && t.ReplicaIdentity != "nothing" && (MatchAny(src.ReplicaIdentityFull, name) || src.TablesWithoutKey == config.KeylessFull):
			t.Decision = "set_full"
		case !t.UsableIdentity:
			t.Decision = "undecided"
		default:
			t.Decision = "publish"
		}
	}
}

// Publication forms, from widest to narrowest.
const (
	FormAllTables      = "FOR ALL TABLES"
	FormTablesInSchema = "FOR TABLES IN SCHEMA"
	FormTableList      = "FOR TABLE list"
)

// Plan is what registration will create or validate on the source.
type Plan struct {
	Publication      string   `json:"publication"`
	PublicationForm  string   `json:"publication_form"`
	Schemas          []string `json:"schemas,omitempty"` // FOR TABLES IN SCHEMA
	Tables           []string `json:"tables"`            // every table whose changes are captured
	Excluded         []string `json:"excluded,omitempty"`
	SetReplicaFull   []string `json:"set_replica_identity_full,omitempty"`
	Undecided        []string `json:"undecided,omitempty"` // no usable replica identity and no decision
	Slot             string   `json:"slot"`
	ProtocolVersion  int      `json:"protocol_version"`
	Streaming        bool     `json:"streaming"`
	DDLCapture       bool     `json:"ddl_capture"`
	DDLObjects       []string `json:"ddl_objects,omitempty"`
	ViaPartitionRoot bool     `json:"publish_via_partition_root"`
}

// DescribeForm is the plan's publication form as SQL says it.
func DescribeForm(pl *Plan) string {
	switch pl.PublicationForm {
	case FormTablesInSchema:
		return "FOR TABLES IN SCHEMA " + strings.Join(pl.Schemas, ", ")
	case FormAllTables:
		return "FOR ALL TABLES"
	}
	return "FOR TABLE <explicit list>"
}
