package corpus

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// ReadSchedule returns the test names of a pg_regress schedule file in
// order, its parallel groups flattened ("test: a b c" gives a, b, c).
// "ignore:" lines only mark a test's failure as ignorable; the test still
// runs from its group.
func ReadSchedule(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read schedule: %w", err)
	}
	defer f.Close()
	var names []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rest, ok := strings.CutPrefix(line, "test:")
		if !ok {
			if strings.HasPrefix(line, "ignore:") {
				continue
			}
			return nil, fmt.Errorf("%s:%d: unknown schedule line %q", path, n, line)
		}
		for _, name := range strings.Fields(rest) {
			if !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read schedule %s: %w", path, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("schedule %s lists no tests", path)
	}
	return names, nil
}

// SelectFiles keeps the names of schedule that are in only (comma or
// space separated), in schedule order; an empty only keeps all. A name
// not in the schedule is an error, so a typo does not run nothing.
func SelectFiles(schedule []string, only string) ([]string, error) {
	want := strings.FieldsFunc(only, func(r rune) bool { return r == ',' || r == ' ' })
	if len(want) == 0 {
		return schedule, nil
	}
	in := map[string]bool{}
	for _, n := range schedule {
		in[n] = true
	}
	pick := map[string]bool{}
	for _, w := range want {
		w = strings.TrimSuffix(w, ".sql")
		if !in[w] {
			return nil, fmt.Errorf("test file %q is not in parallel_schedule", w)
		}
		pick[w] = true
	}
	var out []string
	for _, n := range schedule {
		if pick[n] {
			out = append(out, n)
		}
	}
	return out, nil
}
