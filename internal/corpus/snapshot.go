package corpus

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Snapshot is what a database holds, for comparing a restore with its
// source: a hash of every table's rows, the names of its objects, and its
// sequences' values.
type Snapshot struct {
	LSN       string // pg_current_wal_lsn() when taken (on a source)
	Took      time.Duration
	Tables    map[string]TableState // schema.table
	Objects   map[string][]string   // kind -> sorted names
	Sequences map[string]*int64     // schema.sequence -> last_value (nil: never called)
}

// TableState is one table's rows: their count and the md5 of their text
// forms sorted and joined; Err when the table could not be read.
type TableState struct {
	Kind string // "r" ordinary (rows of the table only), "p" partitioned (every partition's rows)
	Rows int64
	Hash string
	Err  string
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

// sessionSettings fix every setting that changes a value's text form, so
// the same rows hash the same in any database.
var sessionSettings = []string{
	"SET statement_timeout = '5min'",
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
	rows, err := conn.Query(ctx, `SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND `+userNamespace+` ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("snapshot: tables: %w", err)
	}
	type rel struct{ schema, name, kind string }
	var rels []rel
	for rows.Next() {
		var r rel
		if err := rows.Scan(&r.schema, &r.name, &r.kind); err != nil {
			rows.Close()
			return nil, err
		}
		rels = append(rels, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("snapshot: tables: %w", err)
	}
	for i, r := range rels {
		// Ordinary tables without their inheritance children (each child
		// is hashed itself); a partitioned table has no rows of its own, so
		// its hash covers its partitions'.
		only := "ONLY "
		if r.kind == "p" {
			only = ""
		}
		q := fmt.Sprintf(`SELECT count(*), md5(coalesce(string_agg(ROW(r.*)::text, E'\n' ORDER BY ROW(r.*)::text COLLATE "C"), '')) FROM %s%s AS r`,
			only, pgx.Identifier{r.schema, r.name}.Sanitize())
		st := TableState{Kind: r.kind}
		sp := fmt.Sprintf("t%d", i)
		if _, err := conn.Exec(ctx, "SAVEPOINT "+sp); err != nil {
			return nil, fmt.Errorf("snapshot: savepoint: %w", err)
		}
		if err := conn.QueryRow(ctx, q).Scan(&st.Rows, &st.Hash); err != nil {
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

func queryStrings(ctx context.Context, conn *pgx.Conn, q string) ([]string, error) {
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	sort.Strings(out)
	return out, err
}

// Comparison is a restored database compared with its source.
type Comparison struct {
	Equal     []string
	Differing []string // "name: source N rows, restored M rows" or "...: same count, other rows"
	Missing   []string // tables of the source the restore does not have
	Extra     []string // tables of the restore the source does not have
	Unread    []string // tables that could not be read on either side (with why)
	// ObjectsMissing and ObjectsExtra are per kind (ObjectKinds).
	ObjectsMissing map[string][]string
	ObjectsExtra   map[string][]string
	// SequencesBehind: a restored sequence below the source's value (it
	// would hand out a value the source already had).
	SequencesBehind []string
	// LeftOut are the tables the restore said it left out (no usable
	// replica identity); the summary marks them.
	LeftOut map[string]bool
}

// OK reports whether the restore holds exactly the source's tables and
// objects and no sequence is behind.
func (c Comparison) OK() bool {
	if len(c.Differing)+len(c.Missing)+len(c.Extra)+len(c.Unread)+len(c.SequencesBehind) > 0 {
		return false
	}
	for _, v := range c.ObjectsMissing {
		if len(v) > 0 {
			return false
		}
	}
	for _, v := range c.ObjectsExtra {
		if len(v) > 0 {
			return false
		}
	}
	return true
}

// Compare compares restored with src.
func Compare(src, restored *Snapshot) Comparison {
	c := Comparison{ObjectsMissing: map[string][]string{}, ObjectsExtra: map[string][]string{}}
	for _, name := range sortedKeys(src.Tables) {
		a := src.Tables[name]
		b, ok := restored.Tables[name]
		switch {
		case !ok:
			c.Missing = append(c.Missing, name)
		case a.Err != "" || b.Err != "":
			c.Unread = append(c.Unread, fmt.Sprintf("%s: source: %s; restored: %s", name, orNone(a.Err), orNone(b.Err)))
		case a.Hash == b.Hash && a.Rows == b.Rows:
			c.Equal = append(c.Equal, name)
		case a.Rows != b.Rows:
			c.Differing = append(c.Differing, fmt.Sprintf("%s: source %d rows, restored %d", name, a.Rows, b.Rows))
		default:
			c.Differing = append(c.Differing, fmt.Sprintf("%s: %d rows both, contents differ", name, a.Rows))
		}
	}
	for _, name := range sortedKeys(restored.Tables) {
		if _, ok := src.Tables[name]; !ok {
			c.Extra = append(c.Extra, name)
		}
	}
	for _, kind := range ObjectKinds {
		c.ObjectsMissing[kind], c.ObjectsExtra[kind] = setDiff(src.Objects[kind], restored.Objects[kind])
	}
	for _, name := range sortedKeys(src.Sequences) {
		a := src.Sequences[name]
		b, ok := restored.Sequences[name]
		switch {
		case !ok:
			// reported as a missing object
		case a == nil:
			// never called on the source: any value is ahead of it
		case b == nil:
			c.SequencesBehind = append(c.SequencesBehind, fmt.Sprintf("%s: source %d, restored never called", name, *a))
		case *b < *a:
			c.SequencesBehind = append(c.SequencesBehind, fmt.Sprintf("%s: source %d, restored %d", name, *a, *b))
		}
	}
	return c
}

// Summary prints the comparison: counts first, then every name.
func (c Comparison) Summary() string {
	var b strings.Builder
	total := len(c.Equal) + len(c.Differing) + len(c.Missing) + len(c.Unread)
	fmt.Fprintf(&b, "tables: %d of %d equal, %d differing, %d missing, %d unreadable, %d extra in the restore\n",
		len(c.Equal), total, len(c.Differing), len(c.Missing), len(c.Unread), len(c.Extra))
	list := func(title string, names []string) {
		if len(names) == 0 {
			return
		}
		left := 0
		for _, n := range names {
			if c.LeftOut[tableOf(n)] {
				left++
			}
		}
		if left > 0 {
			fmt.Fprintf(&b, "  %s (%d, %d of them LEFT OUT by the restore):\n", title, len(names), left)
		} else {
			fmt.Fprintf(&b, "  %s (%d):\n", title, len(names))
		}
		for _, n := range names {
			if c.LeftOut[tableOf(n)] {
				n += "  (LEFT OUT)"
			}
			fmt.Fprintf(&b, "    %s\n", n)
		}
	}
	list("differing tables", c.Differing)
	list("missing tables", c.Missing)
	list("unreadable tables", c.Unread)
	list("extra tables", c.Extra)
	for _, kind := range ObjectKinds {
		if kind == "tables" {
			continue // above
		}
		m, x := c.ObjectsMissing[kind], c.ObjectsExtra[kind]
		fmt.Fprintf(&b, "%s: %d missing, %d extra\n", kind, len(m), len(x))
		list("missing "+kind, m)
		list("extra "+kind, x)
	}
	fmt.Fprintf(&b, "sequences behind the source: %d\n", len(c.SequencesBehind))
	list("sequences behind", c.SequencesBehind)
	return b.String()
}

// tableOf is the table name a Differing or Missing entry starts with.
func tableOf(entry string) string {
	name, _, _ := strings.Cut(entry, ": ")
	return name
}

// LeftOutTables reads the tables btfu restore names as LEFT OUT in its
// output ("  LEFT OUT     schema.table: why").
func LeftOutTables(stdout string) map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Split(stdout, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(l), "LEFT OUT")
		if !ok {
			continue
		}
		if name := tableOf(strings.TrimSpace(rest)); name != "" {
			m[name] = true
		}
	}
	return m
}

func setDiff(a, b []string) (onlyA, onlyB []string) {
	in := func(list []string) map[string]int {
		m := map[string]int{}
		for _, s := range list {
			m[s]++
		}
		return m
	}
	ma, mb := in(a), in(b)
	for _, s := range a {
		if mb[s] == 0 {
			onlyA = append(onlyA, s)
		}
	}
	for _, s := range b {
		if ma[s] == 0 {
			onlyB = append(onlyB, s)
		}
	}
	return onlyA, onlyB
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func orNone(s string) string {
	if s == "" {
		return "ok"
	}
	return s
}
