package corpus

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// restoreStdout is what btfu restore prints (cli/restore.go), trimmed.
const restoreStdout = `Restore plan: the latest stored state
  base backup  regression/base/20261206T121417Z-0000000012F7BA08.dump
  LEFT OUT     public.logged1: not backed up since 0/117ADD18 (set UNLOGGED: its changes are not in the WAL); it holds at most its rows of the base backup

Restored the latest stored state.
  temporary    5 DDL command(s) on temporary objects not replayed (they lived in their session only)
  LEFT OUT     public.logged1: not backed up since 0/117ADD18 (set UNLOGGED: its changes are not in the WAL); it holds at most its rows of the base backup
  LEFT OUT     public.test_replica_identity: not backed up since 0/B120DD0 (left the publication when it lost its primary key or replica identity); it holds at most its rows of the base backup
  LEFT OUT     public.char_tbl: not backed up since 0/19396C8 (no primary key or replica identity); it holds at most its rows of the base backup
  LEFT OUT     public.mlparted_def: joined the publication at 0/6081330, after this base backup (0/1937E28); its changes cannot be replayed from it
  SKIPPED DDL  0/8466C28: captured DDL: GRANT ALL ON range_parted, mintab TO regress_range_parted_user: ERROR: role "regress_range_parted_user" does not exist (SQLSTATE 42704)
  SKIPPED DDL  0/10E264A0: captured DDL: GRANT SELECT ON LARGE OBJECT 42 TO public: ERROR: large object 42 does not exist (SQLSTATE 42704)
  SKIPPED DDL  0/10E264A8: captured DDL: CREATE TABLE lo (l oid): ERROR: large object 42 does not exist (SQLSTATE 42704)
  SKIPPED DDL  0/8466D00: captured DDL: CREATE TABLE testschema.foo (i int) TABLESPACE regress_tblspace: ERROR: tablespace "regress_tblspace" does not exist (SQLSTATE 42704)
`

func TestParseRestoreOutput(t *testing.T) {
	out := ParseRestoreOutput(restoreStdout)
	if len(out.LeftOut) != 4 || !strings.HasPrefix(out.LeftOut["public.mlparted_def"], "public.mlparted_def: joined the publication at 0/6081330") {
		t.Fatalf("left out: %q", out.LeftOut)
	}
	if len(out.Skipped) != 4 || !strings.HasPrefix(out.Skipped[0], "0/8466C28: captured DDL: GRANT") {
		t.Fatalf("skipped: %q", out.Skipped)
	}
}

// table is a TableState of an ordinary logged table with a primary key.
func table(hash string, rows int64, columns ...string) TableState {
	return TableState{Kind: "r", Rows: rows, Hash: hash, Columns: columns, Persistence: "p", ReplIdent: "d", HasIdentity: true}
}

func TestCompareClassifiesTables(t *testing.T) {
	keyless := func(ts TableState) TableState { ts.HasIdentity = false; return ts }
	unlogged := func(ts TableState) TableState { ts.Persistence = "u"; return ts }
	nothing := func(ts TableState) TableState { ts.ReplIdent, ts.HasIdentity = "n", false; return ts }
	child := func(ts TableState) TableState { ts.Parents = []string{"public.a_star"}; return ts }
	const (
		noKey    = "public.t: not backed up since 0/1 (no primary key or replica identity); it holds at most its rows of the base backup"
		lost     = "public.t: not backed up since 0/1 (left the publication when it lost its primary key or replica identity); it holds …"
		setUnlog = "public.t: not backed up since 0/1 (set UNLOGGED: its changes are not in the WAL); it holds …"
		joined   = "public.t: joined the publication at 0/6, after this base backup (0/1); its changes cannot be replayed from it"
	)
	cases := []struct {
		name      string
		src, got  TableState
		missing   bool
		leftOut   string
		mode      Mode
		class     Class
		reason    string
		rowsEqual bool
		detail    string // a part of Detail
	}{
		{name: "equal", src: table("h", 2, "a integer", "b text"), got: table("h", 2, "a integer", "b text"), class: Equal},
		{name: "other rows", src: table("h", 2, "a integer"), got: table("x", 2, "a integer"), class: Failed, detail: "2 rows both, contents differ"},
		{name: "fewer rows", src: table("h", 2, "a integer"), got: table("x", 1, "a integer"), class: Failed, detail: "source 2 rows, restored 1"},
		{name: "missing", src: table("h", 2, "a integer"), missing: true, class: Failed, detail: "missing from the restore"},
		{name: "unreadable", src: table("h", 2, "a integer"), got: TableState{Err: "permission denied"}, class: Failed, detail: "restored: permission denied"},
		{name: "column type differs", src: table("h", 2, "a integer"), got: table("h", 2, "a bigint"), class: Failed,
			detail: "columns differ: source (a integer), restored (a bigint)"},
		{name: "inheritance child reordered", src: child(table("h", 4, "c name", "a integer")), got: child(table("h", 4, "a integer", "c name")),
			class: ColumnOrder, detail: "source (c name, a integer), restored (a integer, c name)"},
		{name: "reordered, other rows", src: child(table("h", 4, "c name", "a integer")), got: child(table("x", 4, "a integer", "c name")),
			class: Failed, detail: "4 rows both, contents differ"},
		{name: "reordered, no parent", src: table("h", 4, "c name", "a integer"), got: table("h", 4, "a integer", "c name"),
			class: Failed, detail: "column order differs though it inherits from no table"},
		{name: "no key, default mode", src: keyless(table("h", 4, "a integer")), got: keyless(table("x", 1, "a integer")), leftOut: noKey,
			mode: Mode{KeylessLeftOut: true}, class: LeftOut, reason: ReasonNoKey},
		{name: "no key, rows equal anyway", src: keyless(table("h", 4, "a integer")), got: keyless(table("h", 4, "a integer")), leftOut: noKey,
			mode: Mode{KeylessLeftOut: true}, class: LeftOut, reason: ReasonNoKey, rowsEqual: true},
		{name: "no key, full mode", src: keyless(table("h", 4, "a integer")), got: keyless(table("x", 1, "a integer")), leftOut: noKey,
			class: Failed, detail: "should have published it with REPLICA IDENTITY FULL"},
		{name: "no key, but has one", src: table("h", 4, "a integer"), got: table("x", 1, "a integer"), leftOut: noKey, mode: Mode{KeylessLeftOut: true},
			class: Failed, detail: "has a usable replica identity (DEFAULT, a primary key); rows differ from the source's (public.t: not backed up"},
		{name: "identity nothing", src: nothing(table("h", 4, "a integer")), got: table("x", 1, "a integer"), leftOut: lost, class: LeftOut, reason: ReasonNothing},
		{name: "set unlogged", src: unlogged(table("h", 4, "a integer")), got: unlogged(table("x", 1, "a integer")), leftOut: setUnlog, class: LeftOut, reason: ReasonUnlogged},
		{name: "set unlogged, but logged", src: table("h", 4, "a integer"), got: table("x", 1, "a integer"), leftOut: setUnlog, class: Failed,
			detail: "the source's table is logged"},
		{name: "joined after the base", src: table("h", 4, "a integer"), got: table("x", 1, "a integer"), leftOut: joined, class: LeftOut, reason: ReasonLateJoin},
		{name: "undocumented reason", src: table("h", 4, "a integer"), got: table("x", 1, "a integer"), leftOut: "public.t: gone fishing", class: Failed,
			detail: "for no documented reason"},
		{name: "left out and missing", src: keyless(table("h", 4, "a integer")), missing: true, leftOut: noKey, mode: Mode{KeylessLeftOut: true},
			class: Failed, detail: "missing from the restore (LEFT OUT: public.t: not backed up"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := &Snapshot{Tables: map[string]TableState{"public.t": tc.src}}
			got := &Snapshot{Tables: map[string]TableState{}}
			if !tc.missing {
				got.Tables["public.t"] = tc.got
			}
			out := RestoreOutput{LeftOut: map[string]string{}}
			if tc.leftOut != "" {
				out.LeftOut["public.t"] = tc.leftOut
			}
			c := Compare(src, got, out, tc.mode)
			if len(c.Tables) != 1 {
				t.Fatalf("%d verdicts", len(c.Tables))
			}
			v := c.Tables[0]
			if v.Class != tc.class || v.Reason != tc.reason || v.RowsEqual != tc.rowsEqual || !strings.Contains(v.Detail, tc.detail) {
				t.Fatalf("got %+v, want class %q reason %q rows equal %v detail containing %q", v, tc.class, tc.reason, tc.rowsEqual, tc.detail)
			}
			if ok := tc.class != Failed; c.OK() != ok {
				t.Fatalf("OK() = %v, failures %q", c.OK(), c.Failures())
			}
		})
	}
}

func TestComparePartitionedTableOfALeftOutPartition(t *testing.T) {
	part := func(hash string, anc ...string) TableState {
		ts := table(hash, 1, "a integer")
		ts.Ancestors = anc
		return ts
	}
	root := func(hash string) TableState { ts := table(hash, 3, "a integer"); ts.Kind = "p"; return ts }
	src := &Snapshot{Tables: map[string]TableState{
		"public.root": root("r"), "public.mid": root("m"),
		"public.p1": part("1", "public.mid", "public.root"), "public.p2": part("2", "public.root"),
		"public.other": root("o"),
	}}
	src.Tables["public.p1"] = func() TableState { ts := src.Tables["public.p1"]; ts.ReplIdent, ts.HasIdentity = "n", false; return ts }()
	got := &Snapshot{Tables: map[string]TableState{
		"public.root": root("r'"), "public.mid": root("m'"),
		"public.p1": part("1'", "public.mid", "public.root"), "public.p2": part("2", "public.root"),
		"public.other": root("o'"),
	}}
	out := RestoreOutput{LeftOut: map[string]string{"public.p1": "public.p1: not backed up since 0/1 (left the publication when it lost its primary key or replica identity); …"}}
	c := Compare(src, got, out, Mode{})
	want := map[string]string{"public.root": "LEFT OUT " + ReasonPartition + " public.p1", "public.mid": "LEFT OUT " + ReasonPartition + " public.p1",
		"public.p1": "LEFT OUT " + ReasonNothing + " ", "public.p2": "equal  ", "public.other": "FAILED  3 rows both, contents differ"}
	for _, v := range c.Tables {
		if g := string(v.Class) + " " + v.Reason + " " + v.Detail; g != want[v.Table] {
			t.Errorf("%s: got %q, want %q", v.Table, g, want[v.Table])
		}
	}
}

func TestCompareObjectsSequencesAndSkippedDDL(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	src := &Snapshot{
		Tables:    map[string]TableState{"public.a": table("h", 1, "a integer")},
		Objects:   map[string][]string{"tables": {"public.a"}, "views": {"public.v"}, "triggers": {"public.a.t1", "public.a.t2"}},
		Sequences: map[string]*int64{"public.s": n(10), "public.never": nil, "public.t": n(3), "public.u": n(5)},
	}
	got := &Snapshot{
		Tables:    map[string]TableState{"public.a": table("h", 1, "a integer"), "public.x": table("", 0)},
		Objects:   map[string][]string{"tables": {"public.a", "public.x"}, "triggers": {"public.a.t1", "public.a.t3"}},
		Sequences: map[string]*int64{"public.s": n(9), "public.never": nil, "public.t": n(4), "public.u": nil},
	}
	out := ParseRestoreOutput(restoreStdout)
	c := Compare(src, got, out, Mode{})
	want := []string{
		"table public.x: in the restore, not on the source",
		"views: public.v missing from the restore",
		"triggers: public.a.t2 missing from the restore",
		"triggers: public.a.t3 in the restore, not on the source",
		"sequence behind the source: public.s: source 10, restored 9",
		"sequence behind the source: public.u: source 5, restored never called",
		"skipped DDL: 0/10E264A8: captured DDL: CREATE TABLE lo (l oid): ERROR: large object 42 does not exist (SQLSTATE 42704)",
		`skipped DDL: 0/8466D00: captured DDL: CREATE TABLE testschema.foo (i int) TABLESPACE regress_tblspace: ERROR: tablespace "regress_tblspace" does not exist (SQLSTATE 42704)`,
	}
	if got := c.Failures(); !reflect.DeepEqual(got, want) {
		t.Fatalf("failures:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(c.Skipped) != 4 || c.Skipped[0].Limit != LimitRole || c.Skipped[1].Limit != LimitLargeObject || c.Skipped[2].Limit != "" || c.Skipped[3].Limit != "" {
		t.Fatalf("skipped: %+v", c.Skipped)
	}
	s := c.Summary()
	for _, w := range []string{"tables: 1 of the source's: 1 equal, 0 LEFT OUT (accepted), 0 column order differs (accepted), 0 FAILED; 1 only in the restore",
		"missing views (1): public.v", "extra triggers (1): public.a.t3", "skipped DDL: 4, 2 accepted (documented limits), 2 FAILED",
		"accepted, " + LimitRole + " (1):\n    0/8466C28: captured DDL: GRANT ALL", "accepted, " + LimitLargeObject + " (1):\n    0/10E264A0"} {
		if !strings.Contains(s, w) {
			t.Errorf("summary lacks %q:\n%s", w, s)
		}
	}
	if !Compare(src, src, RestoreOutput{}, Mode{}).OK() {
		t.Fatal("a snapshot differs from itself")
	}
}

func TestSummaryAndTimeline(t *testing.T) {
	src := &Snapshot{Tables: map[string]TableState{
		"public.b_star": func() TableState {
			ts := table("h", 4, "class character(1)", "a integer", "b text")
			ts.Parents = []string{"public.a_star"}
			return ts
		}(),
		"public.logged1": func() TableState { ts := table("h", 4, "a integer"); ts.Persistence = "u"; return ts }(),
		"public.logged2": func() TableState { ts := table("h", 4, "a integer"); ts.Persistence = "u"; return ts }(),
		"public.ok":      table("h", 1, "a integer"),
	}}
	got := &Snapshot{Tables: map[string]TableState{
		"public.b_star":  table("h", 4, "class character(1)", "b text", "a integer"),
		"public.logged1": table("x", 1, "a integer"),
		"public.logged2": table("h", 4, "a integer"),
		"public.ok":      table("h", 1, "a integer"),
	}}
	out := RestoreOutput{LeftOut: map[string]string{
		"public.logged1": "public.logged1: not backed up since 0/1 (set UNLOGGED: its changes are not in the WAL); …",
		"public.logged2": "public.logged2: not backed up since 0/1 (set UNLOGGED: its changes are not in the WAL); …",
	}}
	c := Compare(src, got, out, Mode{})
	s := c.Summary()
	for _, w := range []string{
		"tables: 4 of the source's: 1 equal, 2 LEFT OUT (accepted), 1 column order differs (accepted), 0 FAILED",
		"LEFT OUT, " + ReasonUnlogged + ": 2\n    rows differ from the source's (1): public.logged1\n    rows equal to the source's anyway (1): public.logged2\n",
		"column order differs (pg_dump emits inherited columns first), rows equal by column name (1):\n    public.b_star: source (class character(1), a integer, b text), restored (class character(1), b text, a integer)",
	} {
		if !strings.Contains(s, w) {
			t.Errorf("summary lacks %q:\n%s", w, s)
		}
	}
	tl := NewTimeline()
	tl.Phase("plain: suite", 25*time.Second)
	tl.Restore(RestoreOutcome{Run: "full", Label: "latest", Took: 2 * time.Second, Compared: &c})
	tl.Restore(RestoreOutcome{Run: "full", Label: "first-base", Took: time.Second, Err: "exit 1: btfu: restore failed: boom"})
	r := tl.String()
	for _, w := range []string{
		"full     latest          2s  4 tables: 1 equal, LEFT OUT 2 (unlogged 2), column order 1, FAILED 0; objects missing 0, extra 0; sequences behind 0; skipped DDL 0 accepted, 0 failing: ok",
		"full     first-base      1s  RESTORE FAILED: exit 1: btfu: restore failed: boom",
		"plain: suite                                        25s",
		"total",
	} {
		if !strings.Contains(r, w) {
			t.Errorf("timeline lacks %q:\n%s", w, r)
		}
	}
}

func TestRestoreError(t *testing.T) {
	stderr := `{"time":"…","level":"WARN","msg":"table left out of replay","table":"public.mlparted_def","from_lsn":"0/6081330"}
btfu: restore failed: pg_restore of base backup regression/base/x.dump: exit status 1: pg_restore: error: could not execute query: ERROR:  syntax error at or near "sql"
LINE 2:     LANGUAGE sql
                     ^
Command was: CREATE FUNCTION public.test_ambiguous_funcname() RETURNS
    LANGUAGE sql
    AS $_$ select $1; $_$; (the target is partial)
{"time":"…","level":"INFO","msg":"restore progress","phase":"pg_restore","bytes":0}
`
	want := `btfu: restore failed: pg_restore of base backup regression/base/x.dump: exit status 1: pg_restore: error: could not execute query: ERROR:  syntax error at or near "sql" LINE 2:     LANGUAGE sql ^ Command was: CREATE FUNCTION public.test_ambiguous_funcname() RETURNS LANGUAGE sql AS $_$ select $1; $_$; (the target is partial)`
	if got := RestoreError(stderr); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestRowsQuery(t *testing.T) {
	q := rowsQuery("public", `Odd "name"`, "r", []string{"zeta", "Alpha", "b c"})
	if !strings.Contains(q, `ROW(r."Alpha", r."b c", r."zeta")::text`) || !strings.Contains(q, `FROM ONLY "public"."Odd ""name"""`) {
		t.Fatalf("ordinary table: %s", q)
	}
	if q := rowsQuery("s", "p", "p", nil); !strings.Contains(q, `ROW()::text`) || strings.Contains(q, "ONLY") {
		t.Fatalf("partitioned table without columns: %s", q)
	}
}

func TestSelectRuns(t *testing.T) {
	all, err := selectRuns("")
	if err != nil || len(all) != 2 || !all[0].Mode.KeylessLeftOut || all[1].Mode.KeylessLeftOut || !all[1].FirstBase ||
		!strings.Contains(all[1].Config, `tables_without_key = "replica_identity_full"`) {
		t.Fatalf("%+v %v", all, err)
	}
	if r, err := selectRuns("full"); err != nil || len(r) != 1 || r[0].Label != "full" {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := selectRuns("full,nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown run: %v", err)
	}
}
