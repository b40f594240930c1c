package corpus

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestReadScheduleFlattensGroups(t *testing.T) {
	p := filepath.Join(t.TempDir(), "parallel_schedule")
	text := "# comment\ntest: test_setup\n\ntest: a b  c\nignore: b\ntest: d a\n"
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSchedule(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"test_setup", "a", "b", "c", "d"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	sel, err := SelectFiles(got, "d, test_setup,b.sql")
	if err != nil || !reflect.DeepEqual(sel, []string{"test_setup", "b", "d"}) {
		t.Fatalf("select: %v %v", sel, err)
	}
	if _, err := SelectFiles(got, "nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown file: %v", err)
	}
}

func TestErrorLinesAndStatement(t *testing.T) {
	out := strings.Join([]string{
		"CREATE TABLE t (a int);",
		"\\d t",
		"-- fail",
		"UPDATE t",
		"  SET a = 1;",
		`ERROR:  cannot update table "t" because it does not have a replica identity and publishes updates`,
		"HINT:  To enable updating the table, set REPLICA IDENTITY using ALTER TABLE.",
		"SELECT 1;",
		" ?column? ",
		"----------",
		"        1",
		"(1 row)",
		"",
		"psql:<stdin>:9: ERROR:  division by zero",
		"psql:<stdin>:10: error: \\q takes no argument",
		"FATAL:  terminating connection due to administrator command",
		"NOTICE:  ERROR: in a notice",
	}, "\n") + "\n"
	p := filepath.Join(t.TempDir(), "x.out")
	if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	errs, err := ErrorLines(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 3 || !strings.HasPrefix(errs[1], "psql:<stdin>:9: ERROR:") || !strings.HasPrefix(errs[2], "FATAL:") {
		t.Fatalf("error lines: %q", errs)
	}
	stmt := statementBefore(ReadLines(p), errs[0], 1)
	if want := []string{"-- fail", "UPDATE t", "  SET a = 1;"}; !reflect.DeepEqual(stmt, want) {
		t.Fatalf("statement: %q, want %q", stmt, want)
	}
	if stmt := statementBefore(ReadLines(p), errs[1], 1); stmt != nil {
		t.Fatalf("after a blank line there is no echoed statement: %q", stmt)
	}
}

func TestDiff(t *testing.T) {
	a := []string{"x", "e1", "e2", "y", "e3"}
	b := []string{"x", "e1", "new", "e2", "y"}
	got := Diff(a, b, false)
	want := []Edit{{'+', "new"}, {'-', "e3"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if n := Changed(Diff(a, a, true)); n != 0 {
		t.Fatalf("identical inputs: %d changes", n)
	}
	if got := multisetDiff([]string{"a", "b", "b"}, []string{"b", "c"}); !reflect.DeepEqual(got, []Edit{{'-', "a"}, {'-', "b"}, {'+', "c"}}) {
		t.Fatalf("multiset: %q", got)
	}
}

func TestHarmAndReport(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := []FileResult{
		{Name: "same", Errors: []string{"ERROR:  a"}, Took: time.Second, Output: write("p1", "x\nERROR:  a\n")},
		{Name: "worse", Took: time.Second, Output: write("p2", "UPDATE t SET a = 1;\n")},
		{Name: "hung", Took: time.Second, Output: write("p3", "")},
		{Name: "better", Errors: []string{"ERROR:  cannot update"}, Took: time.Second, Output: write("p4", "UPDATE t SET a = 1;\nERROR:  cannot update\n")},
	}
	btfu := []FileResult{
		{Name: "same", Errors: []string{"ERROR:  a"}, Took: 5 * time.Second, Output: write("b1", "x\nERROR:  a\n")},
		{Name: "worse", Errors: []string{"ERROR:  cannot update"}, Took: time.Second, Output: write("b2", "UPDATE t SET a = 1;\nERROR:  cannot update\n")},
		{Name: "hung", TimedOut: true, Exit: -1, Took: 2 * time.Minute, Output: write("b3", "DROP TABLE t;\n"), Left: []string{"prepared transaction 'p'"}},
		{Name: "better", Took: time.Second, Output: write("b4", "UPDATE t SET a = 1;\n")},
	}
	files := CompareRuns(plain, btfu)
	var harmed []string
	for _, f := range files {
		if f.Harmful() {
			harmed = append(harmed, f.Name)
		}
	}
	if !reflect.DeepEqual(harmed, []string{"worse", "hung"}) || !files[0].Slow() || !files[3].Fewer() || files[1].Fewer() {
		t.Fatalf("harmed %v, slow %v", harmed, files[0].Slow())
	}
	r := Report(files, time.Minute, 2*time.Minute)
	for _, want := range []string{"2 harmed by btfu", "3 with different errors or exit codes (1 with fewer errors: informational)", "fewer errors (informational)", "- ERROR:  cannot update", "+ ERROR:  cannot update", "> UPDATE t SET a = 1;", "TIMED OUT", "btfu run left prepared transaction 'p'", "last output: DROP TABLE t;", "same ", "(5.0x)"} {
		if !strings.Contains(r, want) {
			t.Errorf("report lacks %q:\n%s", want, r)
		}
	}
}

func TestGroupLog(t *testing.T) {
	lines := []LogLine{
		{Level: "WARN", Msg: "new table public.a has no key", Kind: "publication.table_left_out"},
		{Level: "WARN", Msg: "new table public.b has no key", Kind: "publication.table_left_out"},
		{Level: "ERROR", Msg: `base backup failed: relation "public.x" does not exist at 0/3C30AC0`},
		{Level: "ERROR", Msg: `base backup failed: relation "public.y" does not exist at 0/5D16B38`},
		{Level: "WARN", Msg: "capture interrupted; retrying"},
	}
	g := GroupLog(lines)
	if len(g) != 3 || g[0].Count != 2 || g[1].Count != 2 || g[1].Last.Msg != lines[3].Msg || g[2].Count != 1 {
		t.Fatalf("%+v", g)
	}
}
