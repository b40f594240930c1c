package corpus

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// FileComparison is one test file run plain and with btfu.
type FileComparison struct {
	Name        string
	Plain, Btfu FileResult
	ErrorDiff   []Edit // ERROR lines: '-' only plain, '+' only with btfu
	OutputDiff  int    // output lines that differ (either side)
}

// Harmful reports whether btfu made this file worse: more errors, or a
// timeout the plain run did not have.
func (f FileComparison) Harmful() bool {
	return len(f.Btfu.Errors) > len(f.Plain.Errors) || (f.Btfu.TimedOut && !f.Plain.TimedOut) || (f.Btfu.RunErr != "" && f.Plain.RunErr == "")
}

// Fewer reports whether the file had fewer errors with btfu: not harm
// (under tables_without_key = "replica_identity_full" the publication
// test's UPDATEs of tables without a key succeed), reported for
// information.
func (f FileComparison) Fewer() bool {
	return len(f.Btfu.Errors) < len(f.Plain.Errors)
}

// Slow reports whether the file took more than three times (plus a second)
// as long with btfu.
func (f FileComparison) Slow() bool {
	return f.Btfu.Took > 3*f.Plain.Took+time.Second
}

// CompareRuns pairs the runs' files by name (in plain's order).
func CompareRuns(plain, btfu []FileResult) []FileComparison {
	byName := map[string]FileResult{}
	for _, r := range btfu {
		byName[r.Name] = r
	}
	var out []FileComparison
	for _, p := range plain {
		b, ok := byName[p.Name]
		if !ok {
			b = FileResult{Name: p.Name, RunErr: "not run", Exit: -1}
		}
		fc := FileComparison{Name: p.Name, Plain: p, Btfu: b}
		fc.ErrorDiff = Diff(p.Errors, b.Errors, false)
		fc.OutputDiff = Changed(Diff(ReadLines(p.Output), ReadLines(b.Output), false))
		out = append(out, fc)
	}
	return out
}

// Report is the do-no-harm report: a table of the files whose error
// counts or exit codes differ, each with its diffed ERROR lines and the
// statement that raised each new one; the timeouts; the files much slower
// with btfu; and the files whose output differs otherwise.
func Report(files []FileComparison, plainTook, btfuTook time.Duration) string {
	var b strings.Builder
	var differ, slow, outOnly, timeouts []FileComparison
	harmful, fewer := 0, 0
	for _, f := range files {
		if f.Harmful() {
			harmful++
		}
		if f.Fewer() {
			fewer++
		}
		if f.Plain.TimedOut || f.Btfu.TimedOut {
			timeouts = append(timeouts, f)
		}
		switch {
		case len(f.Plain.Errors) != len(f.Btfu.Errors) || f.Plain.Exit != f.Btfu.Exit || f.Plain.RunErr != f.Btfu.RunErr || Changed(f.ErrorDiff) > 0:
			differ = append(differ, f)
		case f.OutputDiff > 0:
			outOnly = append(outOnly, f)
		}
		if f.Slow() {
			slow = append(slow, f)
		}
	}
	fmt.Fprintf(&b, "do no harm: %d files; plain run %s, btfu run %s; %d harmed by btfu (more errors or a timeout), %d with different errors or exit codes (%d with fewer errors: informational), %d timed out, %d much slower\n",
		len(files), plainTook.Round(time.Second), btfuTook.Round(time.Second), harmful, len(differ), fewer, len(timeouts), len(slow))
	if len(differ) > 0 {
		fmt.Fprintf(&b, "\nfiles whose errors differ (- plain only, + with btfu only):\n")
		fmt.Fprintf(&b, "  %-26s %6s %6s %5s %5s  %s\n", "FILE", "PLAIN", "BTFU", "EXIT", "EXIT", "")
		for _, f := range differ {
			mark := ""
			if f.Harmful() {
				mark = "HARMED"
			} else if f.Fewer() {
				mark = "fewer errors (informational)"
			}
			fmt.Fprintf(&b, "  %-26s %6d %6d %5d %5d  %s\n", f.Name, len(f.Plain.Errors), len(f.Btfu.Errors), f.Plain.Exit, f.Btfu.Exit, mark)
		}
		for _, f := range differ {
			fmt.Fprintf(&b, "\n  %s: %d errors plain, %d with btfu", f.Name, len(f.Plain.Errors), len(f.Btfu.Errors))
			if f.Plain.Exit != f.Btfu.Exit {
				fmt.Fprintf(&b, "; psql exit %d plain, %d with btfu", f.Plain.Exit, f.Btfu.Exit)
			}
			for _, r := range []FileResult{f.Plain, f.Btfu} {
				if r.RunErr != "" {
					fmt.Fprintf(&b, "; %s", r.RunErr)
				}
				if r.TimedOut {
					fmt.Fprintf(&b, "; TIMED OUT after %s", r.Took.Round(time.Second))
				}
			}
			b.WriteString("\n")
			btfuOut := ReadLines(f.Btfu.Output)
			plainOut := ReadLines(f.Plain.Output)
			seen := map[string]int{}
			for _, e := range f.ErrorDiff {
				fmt.Fprintf(&b, "    %c %s\n", e.Op, e.Text)
				out := plainOut
				if e.Op == '+' {
					out = btfuOut
				}
				key := string(e.Op) + e.Text
				seen[key]++
				for _, l := range statementBefore(out, e.Text, seen[key]) {
					fmt.Fprintf(&b, "        > %s\n", l)
				}
			}
		}
	}
	if len(timeouts) > 0 {
		fmt.Fprintf(&b, "\ntimed out:\n")
		for _, f := range timeouts {
			fmt.Fprintf(&b, "  %-26s plain %s%s, btfu %s%s\n", f.Name, f.Plain.Took.Round(100*time.Millisecond), timedOut(f.Plain),
				f.Btfu.Took.Round(100*time.Millisecond), timedOut(f.Btfu))
			for _, r := range []FileResult{f.Plain, f.Btfu} {
				if !r.TimedOut {
					continue
				}
				out := ReadLines(r.Output)
				if len(out) > 4 {
					out = out[len(out)-4:]
				}
				for _, l := range out {
					fmt.Fprintf(&b, "    last output: %s\n", cut(l, 160))
				}
			}
			for _, l := range f.Plain.Left {
				fmt.Fprintf(&b, "    plain run left %s\n", l)
			}
			for _, l := range f.Btfu.Left {
				fmt.Fprintf(&b, "    btfu run left %s\n", l)
			}
		}
	}
	if len(slow) > 0 {
		fmt.Fprintf(&b, "\nmore than 3x (+1 s) slower with btfu:\n")
		for _, f := range slow {
			fmt.Fprintf(&b, "  %-26s plain %8s  btfu %8s  (%.1fx)\n", f.Name, f.Plain.Took.Round(10*time.Millisecond), f.Btfu.Took.Round(10*time.Millisecond),
				f.Btfu.Took.Seconds()/max(f.Plain.Took.Seconds(), 0.001))
		}
	}
	slowest := append([]FileComparison(nil), files...)
	sort.Slice(slowest, func(i, j int) bool {
		return slowest[i].Btfu.Took-slowest[i].Plain.Took > slowest[j].Btfu.Took-slowest[j].Plain.Took
	})
	if len(slowest) > 5 {
		slowest = slowest[:5]
	}
	fmt.Fprintf(&b, "\nlargest slowdowns with btfu:")
	for _, f := range slowest {
		fmt.Fprintf(&b, " %s %s->%s;", f.Name, f.Plain.Took.Round(10*time.Millisecond), f.Btfu.Took.Round(10*time.Millisecond))
	}
	b.WriteString("\n")
	if len(outOnly) > 0 {
		fmt.Fprintf(&b, "\nsame errors, other output (informational; lines differing): ")
		parts := make([]string, 0, len(outOnly))
		for _, f := range outOnly {
			parts = append(parts, fmt.Sprintf("%s(%d)", f.Name, f.OutputDiff))
		}
		b.WriteString(strings.Join(parts, " "))
		b.WriteString("\n")
	}
	return b.String()
}

func timedOut(r FileResult) string {
	if r.TimedOut {
		return " TIMED OUT"
	}
	return ""
}

// resultLine ends the output of the statement before: a row count, a
// blank line, another error or its details.
var resultLine = regexp.MustCompile(`^(\(\d+ rows?\)|(psql:[^ ]*:\d+: )?(ERROR|FATAL|PANIC|DETAIL|HINT|CONTEXT|LINE \d+|NOTICE|WARNING|INFO):.*|\s*\^|-+(\+-+)*|)$`)

// statementBefore returns the echoed statement before the nth occurrence
// of the error line in out (at most 6 lines of at most 160 characters):
// the line before the error ends the statement; it starts after the
// line that ended the one before (";"), after the previous statement's
// output, or after a CONTEXT continuation line. Comments just above it
// stay, they often say what the statement should do.
func statementBefore(out []string, line string, nth int) []string {
	idx := -1
	for i, l := range out {
		if l == line {
			nth--
			if nth == 0 {
				idx = i
				break
			}
		}
	}
	if idx < 1 || resultLine.MatchString(out[idx-1]) {
		return nil
	}
	start := idx - 1
	for start > 0 && idx-start < 6 {
		prev := out[start-1]
		if resultLine.MatchString(prev) || statementEnd.MatchString(prev) || contextLine.MatchString(prev) {
			break
		}
		start--
	}
	var stmt []string
	for _, l := range out[start:idx] {
		stmt = append(stmt, cut(l, 160))
	}
	// A DETAIL line after the error says which object it is about.
	if idx+1 < len(out) && strings.HasPrefix(out[idx+1], "DETAIL:") {
		stmt = append(stmt, out[idx+1])
	}
	return stmt
}

// statementEnd ends a statement: ";", then perhaps a comment; or is a
// psql meta-command line (\d, \set ...).
var statementEnd = regexp.MustCompile(`;\s*(--.*)?$|^\\`)

// contextLine continues a CONTEXT: of the output before.
var contextLine = regexp.MustCompile(`^(PL/pgSQL function |SQL statement "|SQL function "|SQL expression "|PL/pgSQL assignment |COPY |extended query with)`)

// ServerLogLines returns the WARNING, ERROR, FATAL and PANIC records of a
// server log (log_line_prefix '%m %b[%p] %q%a ') that did not come from a
// pg_regress session and do not appear in the plain run's log (plainLog;
// compared without time and pid), with the DETAIL, HINT, CONTEXT and
// STATEMENT lines that follow them: btfu's own sessions and walsenders,
// and server processes. waits returns the lock waits ("still waiting
// for", with their DETAIL and STATEMENT) of any session. Lines are cut at
// 300 characters.
func ServerLogLines(path, plainLog string) (other, waits []string) {
	known := map[string]int{}
	for _, l := range ReadLines(plainLog) {
		known[normalizeLog(l)]++
	}
	lines := ReadLines(path)
	for i, l := range lines {
		if strings.Contains(l, "still waiting for") {
			waits = append(waits, cut(l, 300))
			for j := i + 1; j < len(lines) && j <= i+3 && follow.MatchString(lines[j]); j++ {
				waits = append(waits, "    "+cut(lines[j], 300))
			}
		}
		if strings.Contains(l, " pg_regress/") || !severity.MatchString(l) {
			continue
		}
		if k := normalizeLog(l); known[k] > 0 {
			known[k]--
			continue
		}
		other = append(other, cut(l, 300))
		for j := i + 1; j < len(lines) && j <= i+3 && follow.MatchString(lines[j]); j++ {
			other = append(other, "    "+cut(lines[j], 300))
		}
	}
	return other, waits
}

var (
	severity = regexp.MustCompile(`\] [^ ]* ?(WARNING|ERROR|FATAL|PANIC):  `)
	follow   = regexp.MustCompile(`\] [^ ]* ?(DETAIL|STATEMENT|HINT|CONTEXT):  `)
	logStamp = regexp.MustCompile(`^\S+ \S+ \S+ (.*?)\[\d+\]`)
	digits   = regexp.MustCompile(`\d+`)
)

// normalizeLog drops a log line's time and pid, and numbers (OIDs, pids,
// sizes), so the same event matches across clusters.
func normalizeLog(l string) string {
	return digits.ReplaceAllString(logStamp.ReplaceAllString(l, "$1"), "N")
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
