package corpus

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Mode is what the protected run's configuration lets a restore leave
// out.
type Mode struct {
	// KeylessLeftOut: tables without a usable replica identity are left
	// out (tables_without_key = "leave_out", the default). Under
	// "replica_identity_full" btfu publishes them with REPLICA IDENTITY
	// FULL, so such a table left out is a failure.
	KeylessLeftOut bool
}

// Class is what a restored table is, compared with its source.
type Class string

// The classes. Equal, LeftOut and ColumnOrder are accepted; Failed fails
// the test.
const (
	// Equal: the same columns in the same order, and the same rows.
	Equal Class = "equal"
	// LeftOut: the restore named it LEFT OUT, for a documented reason
	// that the source's catalog confirms (Reason*).
	LeftOut Class = "LEFT OUT"
	// ColumnOrder: an inheritance child with the same columns in another
	// order and the same rows compared column by column by name. pg_dump
	// writes CREATE TABLE child (local columns) INHERITS (parent), so the
	// parent's columns come first, also when the parent gained them after
	// the child was created.
	ColumnOrder Class = "column order differs (pg_dump emits inherited columns first)"
	// Failed: anything else.
	Failed Class = "FAILED"
)

// Documented reasons for a table the restore leaves out.
const (
	ReasonUnlogged  = "unlogged (set UNLOGGED: its changes are not in the WAL)"
	ReasonNothing   = "REPLICA IDENTITY NOTHING set by the user"
	ReasonNoKey     = "no primary key or replica identity (default tables_without_key = \"leave_out\")"
	ReasonLateJoin  = "joined the publication after this base backup"
	ReasonPartition = "a partition of it is LEFT OUT"
)

// reasonOrder is the order LEFT OUT reasons are reported in.
var reasonOrder = []string{ReasonUnlogged, ReasonNothing, ReasonNoKey, ReasonLateJoin, ReasonPartition}

// TableVerdict is one table of the source (or one only in the restore).
type TableVerdict struct {
	Table string
	Class Class
	// Reason is a LEFT OUT table's documented reason (Reason*).
	Reason string
	// Detail: what differs (FAILED), the columns in both orders
	// (ColumnOrder), the partitions left out (ReasonPartition).
	Detail string
	// RowsEqual: a LEFT OUT table whose rows equal the source's anyway
	// (nothing happened to it after the base backup).
	RowsEqual bool
}

// RestoreOutput is what btfu restore printed about what it did not
// reproduce.
type RestoreOutput struct {
	// LeftOut maps each table named LEFT OUT to the restore's description
	// ("schema.table: not backed up since 0/… (reason); …").
	LeftOut map[string]string
	// Skipped are the SKIPPED DDL lines ("LSN: statement: error").
	Skipped []string
}

// ParseRestoreOutput reads the LEFT OUT and SKIPPED DDL lines of btfu
// restore's standard output (the plan prints the LEFT OUT lines too; a
// table is kept once).
func ParseRestoreOutput(stdout string) RestoreOutput {
	out := RestoreOutput{LeftOut: map[string]string{}}
	seen := map[string]bool{}
	for _, l := range strings.Split(stdout, "\n") {
		l = strings.TrimSpace(l)
		if rest, ok := strings.CutPrefix(l, "LEFT OUT"); ok {
			rest = strings.TrimSpace(rest)
			if name, _, ok := strings.Cut(rest, ": "); ok && name != "" {
				out.LeftOut[name] = rest
			}
			continue
		}
		if rest, ok := strings.CutPrefix(l, "SKIPPED DDL"); ok {
			rest = strings.TrimSpace(rest)
			if !seen[rest] {
				seen[rest] = true
				out.Skipped = append(out.Skipped, rest)
			}
		}
	}
	return out
}

// Skipped DDL accepted: a failure that follows from a documented limit
// (README, "What logical-tier recovery cannot give back"), told by the
// error the target gave.
const (
	// LimitRole: a GRANT, REVOKE, ALTER … OWNER or the like naming a role
	// that does not exist on the target. Roles belong to the cluster, not
	// to the database btfu streams; the regression suite drops most of
	// the roles it creates.
	LimitRole = "a role that does not exist on the target"
	// LimitLargeObject: a COMMENT or GRANT on a large object the restore
	// does not hold: large objects are not decoded, a restore has those
	// of its base backup only.
	LimitLargeObject = "a large object the restore does not hold (not decoded)"
)

var skippedLimits = []struct {
	limit string
	err   *regexp.Regexp
}{
	{LimitRole, regexp.MustCompile(`role "[^"]*" does not exist \(SQLSTATE 42704\)$`)},
	{LimitLargeObject, regexp.MustCompile(`(?i)LARGE OBJECT \d+\b.*: ERROR: large object \d+ does not exist \(SQLSTATE 42704\)$`)},
}

// SkippedDDL is one SKIPPED DDL line of a restore.
type SkippedDDL struct {
	Line string
	// Limit is the documented limit it follows from (Limit*); empty when
	// none: the skip fails the test.
	Limit string
}

// skippedLimit returns the documented limit a SKIPPED DDL line follows
// from, or "".
func skippedLimit(line string) string {
	for _, l := range skippedLimits {
		if l.err.MatchString(line) {
			return l.limit
		}
	}
	return ""
}

// Comparison is a restored database compared with its source.
type Comparison struct {
	Tables []TableVerdict // the source's tables, by name
	Extra  []string       // tables only in the restore
	// ObjectsMissing and ObjectsExtra are per kind (ObjectKinds but
	// tables, which Tables covers).
	ObjectsMissing map[string][]string
	ObjectsExtra   map[string][]string
	// SequencesBehind: a restored sequence below the source's value (it
	// would hand out a value the source already had).
	SequencesBehind []string
	Skipped         []SkippedDDL
}

// Compare compares restored with src, given what the restore printed and
// the mode of the run that stored it.
func Compare(src, restored *Snapshot, out RestoreOutput, mode Mode) Comparison {
	c := Comparison{ObjectsMissing: map[string][]string{}, ObjectsExtra: map[string][]string{}}
	// LEFT OUT tables the source's catalog explains, for the partitioned
	// tables above them.
	accepted := map[string]bool{}
	for name, desc := range out.LeftOut {
		if a, ok := src.Tables[name]; ok {
			if _, problem := leftOutReason(desc, a, mode); problem == "" {
				accepted[name] = true
			}
		}
	}
	for _, name := range sortedKeys(src.Tables) {
		c.Tables = append(c.Tables, classify(name, src, restored, out, mode, accepted))
	}
	for _, name := range sortedKeys(restored.Tables) {
		if _, ok := src.Tables[name]; !ok {
			c.Extra = append(c.Extra, name)
		}
	}
	for _, kind := range ObjectKinds {
		if kind == "tables" {
			continue
		}
		c.ObjectsMissing[kind], c.ObjectsExtra[kind] = setDiff(src.Objects[kind], restored.Objects[kind])
	}
	for _, name := range sortedKeys(src.Sequences) {
		a := src.Sequences[name]
		b, ok := restored.Sequences[name]
		switch {
		case !ok:
			// a missing object
		case a == nil:
			// never called on the source: any value is ahead of it
		case b == nil:
			c.SequencesBehind = append(c.SequencesBehind, fmt.Sprintf("%s: source %d, restored never called", name, *a))
		case *b < *a:
			c.SequencesBehind = append(c.SequencesBehind, fmt.Sprintf("%s: source %d, restored %d", name, *a, *b))
		}
	}
	for _, l := range out.Skipped {
		c.Skipped = append(c.Skipped, SkippedDDL{Line: l, Limit: skippedLimit(l)})
	}
	return c
}

func classify(name string, src, restored *Snapshot, out RestoreOutput, mode Mode, accepted map[string]bool) TableVerdict {
	a := src.Tables[name]
	b, ok := restored.Tables[name]
	v := TableVerdict{Table: name, Class: Failed}
	switch {
	case !ok:
		v.Detail = "missing from the restore"
		if desc, named := out.LeftOut[name]; named {
			v.Detail += " (LEFT OUT: " + desc + ")"
		}
		return v
	case a.Err != "" || b.Err != "":
		v.Detail = fmt.Sprintf("unreadable: source: %s; restored: %s", orNone(a.Err), orNone(b.Err))
		return v
	}
	rowsEqual := a.Rows == b.Rows && a.Hash == b.Hash
	sameOrder := equalStrings(a.Columns, b.Columns)
	sameColumns := equalStrings(sortedCopy(a.Columns), sortedCopy(b.Columns))
	if desc, named := out.LeftOut[name]; named {
		reason, problem := leftOutReason(desc, a, mode)
		if problem != "" {
			rows := "rows equal to the source's"
			if !rowsEqual || !sameColumns {
				rows = "rows differ from the source's"
			}
			v.Detail = fmt.Sprintf("LEFT OUT by the restore, but %s; %s (%s)", problem, rows, desc)
			return v
		}
		return TableVerdict{Table: name, Class: LeftOut, Reason: reason, RowsEqual: rowsEqual && sameColumns}
	}
	switch {
	case sameOrder && rowsEqual:
		v.Class = Equal
		return v
	case sameColumns && rowsEqual && len(a.Parents) > 0:
		v.Class = ColumnOrder
		v.Detail = fmt.Sprintf("source (%s), restored (%s)", strings.Join(a.Columns, ", "), strings.Join(b.Columns, ", "))
		return v
	}
	if a.Kind == "p" {
		var parts []string
		for left := range accepted {
			for _, anc := range src.Tables[left].Ancestors {
				if anc == name {
					parts = append(parts, left)
				}
			}
		}
		if len(parts) > 0 && sameColumns {
			sort.Strings(parts)
			return TableVerdict{Table: name, Class: LeftOut, Reason: ReasonPartition, Detail: strings.Join(parts, ", ")}
		}
	}
	var what []string
	if !sameColumns {
		what = append(what, fmt.Sprintf("columns differ: source (%s), restored (%s)", strings.Join(a.Columns, ", "), strings.Join(b.Columns, ", ")))
	} else if !sameOrder && len(a.Parents) > 0 {
		what = append(what, "columns in another order (accepted alone: pg_dump emits inherited columns first)")
	} else if !sameOrder {
		what = append(what, fmt.Sprintf("column order differs though it inherits from no table: source (%s), restored (%s)", strings.Join(a.Columns, ", "), strings.Join(b.Columns, ", ")))
	}
	switch {
	case a.Rows != b.Rows:
		what = append(what, fmt.Sprintf("source %d rows, restored %d", a.Rows, b.Rows))
	case a.Hash != b.Hash:
		what = append(what, fmt.Sprintf("%d rows both, contents differ", a.Rows))
	}
	v.Detail = strings.Join(what, "; ")
	return v
}

// leftOutReason returns the documented reason a restore's LEFT OUT
// description gives, checked against the source's catalog at the target
// (a), or what is wrong with it.
func leftOutReason(desc string, a TableState, mode Mode) (reason, problem string) {
	switch {
	case strings.Contains(desc, "joined the publication at"):
		return ReasonLateJoin, ""
	case strings.Contains(desc, "UNLOGGED"):
		if a.Persistence == "u" {
			return ReasonUnlogged, ""
		}
		return "", "the source's table is logged"
	case strings.Contains(desc, "primary key or replica identity"):
		switch {
		case a.ReplIdent == "n":
			return ReasonNothing, ""
		case a.HasIdentity:
			return "", fmt.Sprintf("the source's table has a usable replica identity (%s)", identityName(a.ReplIdent))
		case mode.KeylessLeftOut:
			return ReasonNoKey, ""
		}
		return "", `under tables_without_key = "replica_identity_full" btfu should have published it with REPLICA IDENTITY FULL`
	}
	return "", "for no documented reason"
}

func identityName(r string) string {
	switch r {
	case "d":
		return "DEFAULT, a primary key"
	case "f":
		return "FULL"
	case "i":
		return "USING INDEX"
	case "n":
		return "NOTHING"
	}
	return r
}

// Count returns how many tables are of class k.
func (c Comparison) Count(k Class) int {
	n := 0
	for _, v := range c.Tables {
		if v.Class == k {
			n++
		}
	}
	return n
}

// Failures lists every difference that fails the test, one line each.
func (c Comparison) Failures() []string {
	var out []string
	for _, v := range c.Tables {
		if v.Class == Failed {
			out = append(out, "table "+v.Table+": "+v.Detail)
		}
	}
	for _, n := range c.Extra {
		out = append(out, "table "+n+": in the restore, not on the source")
	}
	for _, kind := range ObjectKinds {
		for _, n := range c.ObjectsMissing[kind] {
			out = append(out, fmt.Sprintf("%s: %s missing from the restore", kind, n))
		}
		for _, n := range c.ObjectsExtra[kind] {
			out = append(out, fmt.Sprintf("%s: %s in the restore, not on the source", kind, n))
		}
	}
	for _, s := range c.SequencesBehind {
		out = append(out, "sequence behind the source: "+s)
	}
	for _, s := range c.Skipped {
		if s.Limit == "" {
			out = append(out, "skipped DDL: "+s.Line)
		}
	}
	return out
}

// OK reports whether every difference is an accepted one.
func (c Comparison) OK() bool { return len(c.Failures()) == 0 }

// Summary prints the counts by class, then the names of every class but
// equal (LEFT OUT by reason), the objects, sequences and skipped DDL.
func (c Comparison) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tables: %d of the source's: %d equal, %d LEFT OUT (accepted), %d column order differs (accepted), %d FAILED; %d only in the restore\n",
		len(c.Tables), c.Count(Equal), c.Count(LeftOut), c.Count(ColumnOrder), c.Count(Failed), len(c.Extra))
	byReason := map[string][]TableVerdict{}
	for _, v := range c.Tables {
		if v.Class == LeftOut {
			byReason[v.Reason] = append(byReason[v.Reason], v)
		}
	}
	for _, r := range reasonOrder {
		vs := byReason[r]
		if len(vs) == 0 {
			continue
		}
		var differ, same []string
		for _, v := range vs {
			n := v.Table
			if v.Detail != "" {
				n += " (" + v.Detail + ")"
			}
			if v.RowsEqual {
				same = append(same, n)
			} else {
				differ = append(differ, n)
			}
		}
		fmt.Fprintf(&b, "  LEFT OUT, %s: %d\n", r, len(vs))
		if len(differ) > 0 {
			fmt.Fprintf(&b, "    rows differ from the source's (%d): %s\n", len(differ), strings.Join(differ, ", "))
		}
		if len(same) > 0 {
			fmt.Fprintf(&b, "    rows equal to the source's anyway (%d): %s\n", len(same), fewNames(same, 12))
		}
	}
	if n := c.Count(ColumnOrder); n > 0 {
		fmt.Fprintf(&b, "  %s, rows equal by column name (%d):\n", ColumnOrder, n)
		for _, v := range c.Tables {
			if v.Class == ColumnOrder {
				fmt.Fprintf(&b, "    %s: %s\n", v.Table, v.Detail)
			}
		}
	}
	if n := c.Count(Failed); n > 0 {
		fmt.Fprintf(&b, "  FAILED (%d):\n", n)
		for _, v := range c.Tables {
			if v.Class == Failed {
				fmt.Fprintf(&b, "    %s: %s\n", v.Table, v.Detail)
			}
		}
	}
	if len(c.Extra) > 0 {
		fmt.Fprintf(&b, "  only in the restore (%d): %s\n", len(c.Extra), strings.Join(c.Extra, ", "))
	}
	var kinds []string
	for _, kind := range ObjectKinds {
		if kind == "tables" {
			continue
		}
		m, x := c.ObjectsMissing[kind], c.ObjectsExtra[kind]
		kinds = append(kinds, fmt.Sprintf("%s %d/%d", kind, len(m), len(x)))
	}
	fmt.Fprintf(&b, "objects missing/extra: %s\n", strings.Join(kinds, ", "))
	for _, kind := range ObjectKinds {
		if m := c.ObjectsMissing[kind]; len(m) > 0 {
			fmt.Fprintf(&b, "  missing %s (%d): %s\n", kind, len(m), strings.Join(m, ", "))
		}
		if x := c.ObjectsExtra[kind]; len(x) > 0 {
			fmt.Fprintf(&b, "  extra %s (%d): %s\n", kind, len(x), strings.Join(x, ", "))
		}
	}
	fmt.Fprintf(&b, "sequences behind the source: %d\n", len(c.SequencesBehind))
	for _, s := range c.SequencesBehind {
		fmt.Fprintf(&b, "  %s\n", s)
	}
	failing := 0
	byLimit := map[string][]string{}
	for _, s := range c.Skipped {
		if s.Limit == "" {
			failing++
		} else {
			byLimit[s.Limit] = append(byLimit[s.Limit], s.Line)
		}
	}
	fmt.Fprintf(&b, "skipped DDL: %d, %d accepted (documented limits), %d FAILED\n", len(c.Skipped), len(c.Skipped)-failing, failing)
	for _, l := range skippedLimits {
		if lines := byLimit[l.limit]; len(lines) > 0 {
			fmt.Fprintf(&b, "  accepted, %s (%d):\n", l.limit, len(lines))
			for _, line := range lines {
				fmt.Fprintf(&b, "    %s\n", line)
			}
		}
	}
	if failing > 0 {
		fmt.Fprintf(&b, "  FAILED (%d):\n", failing)
		for _, s := range c.Skipped {
			if s.Limit == "" {
				fmt.Fprintf(&b, "    %s\n", s.Line)
			}
		}
	}
	return b.String()
}

// RestoreError is the error btfu restore printed on its standard error:
// from its last line starting "btfu: " to the end, without the progress
// log lines, on one line, at most 1000 bytes.
func RestoreError(stderr string) string {
	var keep []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, `"msg":"restore progress"`) || strings.TrimSpace(l) == "" {
			continue
		}
		if strings.HasPrefix(l, "btfu: ") {
			keep = keep[:0]
		}
		keep = append(keep, strings.TrimSpace(l))
	}
	return cut(strings.Join(keep, " "), 1000)
}

// fewNames joins the first n names and counts the others.
func fewNames(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
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
