package api

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btfu/btfu/engine"
)

// parseExposition checks text against the Prometheus text exposition
// format 0.0.4 and returns each series (name{labels} as written) with its
// value. Every line must be a HELP, a TYPE, another comment or a sample;
// a family's HELP and TYPE come once, before its samples; a family's
// samples are one group; no series repeats.
func parseExposition(t *testing.T, text string) map[string]float64 {
	t.Helper()
	if !strings.HasSuffix(text, "\n") {
		t.Errorf("exposition does not end with a line feed")
	}
	series := map[string]float64{}
	typ := map[string]string{}
	help := map[string]bool{}
	done := map[string]bool{} // families whose group of samples has ended
	current := ""
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		n := i + 1
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			f := strings.Fields(line)
			if len(f) < 3 || (f[1] != "HELP" && f[1] != "TYPE") {
				continue // a plain comment
			}
			name := f[2]
			if !validName(name, true) {
				t.Errorf("line %d: bad metric name %q", n, name)
			}
			if _, ok := series[name]; ok || done[name] || current == name {
				t.Errorf("line %d: %s %s after its samples", n, f[1], name)
			}
			switch f[1] {
			case "HELP":
				if help[name] {
					t.Errorf("line %d: second HELP for %s", n, name)
				}
				help[name] = true
				if !strings.HasPrefix(line, "# HELP "+name+" ") || strings.Contains(strings.NewReplacer(`\\`, "", `\n`, "").Replace(line), `\`) {
					t.Errorf("line %d: bad HELP line %q", n, line)
				}
			case "TYPE":
				if _, dup := typ[name]; dup {
					t.Errorf("line %d: second TYPE for %s", n, name)
				}
				if len(f) != 4 || !map[string]bool{"counter": true, "gauge": true, "histogram": true, "summary": true, "untyped": true}[f[3]] {
					t.Errorf("line %d: bad TYPE line %q", n, line)
				} else {
					typ[name] = f[3]
				}
			}
			continue
		}
		name, labels, rest, err := parseSample(line)
		if err != "" {
			t.Errorf("line %d: %s: %q", n, err, line)
			continue
		}
		if _, ok := typ[name]; !ok {
			t.Errorf("line %d: sample of %s before its TYPE", n, name)
		}
		if !help[name] {
			t.Errorf("line %d: sample of %s without HELP", n, name)
		}
		if typ[name] == "counter" && !strings.HasSuffix(name, "_total") {
			t.Errorf("line %d: counter %s does not end in _total", n, name)
		}
		if name != current {
			if done[name] {
				t.Errorf("line %d: samples of %s are not one group", n, name)
			}
			done[current] = true
			current = name
		}
		fields := strings.Split(rest, " ")
		if len(fields) > 2 {
			t.Errorf("line %d: trailing text %q", n, rest)
			continue
		}
		v, perr := parseValue(fields[0])
		if perr != nil {
			t.Errorf("line %d: value %q: %v", n, fields[0], perr)
		}
		if len(fields) == 2 {
			if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
				t.Errorf("line %d: timestamp %q", n, fields[1])
			}
		}
		key := name + labels
		if _, dup := series[key]; dup {
			t.Errorf("line %d: series %s repeated", n, key)
		}
		series[key] = v
	}
	return series
}

// parseSample splits `name{l="v",...} rest`, checking names and label
// escapes; labels is the {...} part as written ("" without labels).
func parseSample(line string) (name, labels, rest, problem string) {
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return "", "", "", "no value"
	}
	name = line[:i]
	if !validName(name, true) {
		return "", "", "", "bad metric name"
	}
	if line[i] == ' ' {
		return name, "", line[i+1:], ""
	}
	j := i + 1
	seen := map[string]bool{}
	for {
		if j < len(line) && line[j] == '}' {
			j++
			break
		}
		k := strings.Index(line[j:], "=")
		if k <= 0 {
			return "", "", "", "bad label"
		}
		ln := line[j : j+k]
		if !validName(ln, false) || strings.HasPrefix(ln, "__") {
			return "", "", "", "bad label name " + ln
		}
		if seen[ln] {
			return "", "", "", "label " + ln + " repeated"
		}
		seen[ln] = true
		j += k + 1
		if j >= len(line) || line[j] != '"' {
			return "", "", "", "label value not quoted"
		}
		j++
		for {
			if j >= len(line) {
				return "", "", "", "unterminated label value"
			}
			c := line[j]
			if c == '"' {
				j++
				break
			}
			if c == '\\' {
				if j+1 >= len(line) || !strings.ContainsRune(`\"n`, rune(line[j+1])) {
					return "", "", "", "bad escape in label value"
				}
				j += 2
				continue
			}
			j++
		}
		if j < len(line) && line[j] == ',' {
			j++
			continue
		}
		if j >= len(line) || line[j] != '}' {
			return "", "", "", "labels not closed"
		}
	}
	if j >= len(line) || line[j] != ' ' {
		return "", "", "", "no space before the value"
	}
	return name, line[i:j], line[j+1:], ""
}

func validName(s string, colon bool) bool {
	for i, c := range s {
		ok := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (colon && c == ':') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			return false
		}
	}
	return s != ""
}

func parseValue(s string) (float64, error) {
	switch s {
	case "NaN":
		return math.NaN(), nil
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	}
	return strconv.ParseFloat(s, 64)
}

// Label values are escaped, missing values leave no sample, large LSNs
// and counts are exact.
func TestMetricsTextEscapesAndOmits(t *testing.T) {
	lag, rpo := int64(12345678), 1.5
	st := engine.Status{Sources: []engine.SourceStatus{
		{Name: `we"ird\name` + "\nx", State: "streaming", Streaming: true, FlushedLSN: "FFFFFFFF/FFFFFFFF", LagBytes: &lag, RPOSeconds: &rpo, Segments: 3, SegmentBytes: 1 << 40,
			LastBackup: &engine.BackupInfo{At: time.Now().Add(-time.Hour), Duration: 90 * time.Second}},
		{Name: "paused", State: "paused", FlushedLSN: "0/16B3748", Attention: "paused: changes are not being captured"},
	}}
	var buf bytes.Buffer
	writeMetrics(&buf, st, map[string]int64{"paused": 7}, map[errorKey]int64{{"", "config"}: 2, {"paused", "capture"}: 1}, time.Now())
	got := parseExposition(t, buf.String())
	weird := `{source="we\"ird\\name\nx"}`
	for series, want := range map[string]float64{
		"btfu_lag_bytes" + weird:                                    12345678,
		"btfu_rpo_seconds" + weird:                                  1.5,
		"btfu_flushed_lsn" + weird:                                  float64(math.MaxUint64),
		"btfu_segment_bytes_stored" + weird:                         1 << 40,
		"btfu_base_backup_duration_seconds" + weird:                 90,
		"btfu_source_up" + weird:                                    1,
		"btfu_source_up{source=\"paused\"}":                         0,
		"btfu_source_healthy{source=\"paused\"}":                    0,
		"btfu_flushed_lsn{source=\"paused\"}":                       0x16B3748,
		"btfu_segments_stored_total{source=\"paused\"}":             7,
		"btfu_errors_total{source=\"\",category=\"config\"}":        2,
		"btfu_errors_total{source=\"paused\",category=\"capture\"}": 1,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	for _, absent := range []string{`btfu_lag_bytes{source="paused"}`, `btfu_base_backup_age_seconds{source="paused"}`, "btfu_segments_stored_total" + weird} {
		if _, ok := got[absent]; ok {
			t.Errorf("%s has a sample without a value", absent)
		}
	}
	if !strings.Contains(buf.String(), "btfu_flushed_lsn"+weird+" 18446744073709551615\n") {
		t.Errorf("LSN not written exactly:\n%s", buf.String())
	}
}
