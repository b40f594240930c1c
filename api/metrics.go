package api

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
)

// metric writes one metric family's HELP and TYPE lines.
func family(w io.Writer, name, typ, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

// label escapes a label value (backslash, double quote, newline).
func label(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	st, err := s.eng.Status(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	type fam struct {
		name, typ, help string
		get             func(i int) (float64, bool)
	}
	now := time.Now()
	srcs := st.Sources
	fams := []fam{
		{"btfu_source_up", "gauge", "1 when the source streams with nothing needing attention.", func(i int) (float64, bool) {
			if srcs[i].State == "streaming" && srcs[i].Attention == "" {
				return 1, true
			}
			return 0, true
		}},
		{"btfu_lag_bytes", "gauge", "WAL bytes between the source's position and what is stored.", func(i int) (float64, bool) {
			if srcs[i].LagBytes == nil {
				return 0, false
			}
			return float64(*srcs[i].LagBytes), true
		}},
		{"btfu_rpo_seconds", "gauge", "Age of the newest stored commit or keepalive: what a failure now would lose at most.", func(i int) (float64, bool) {
			if srcs[i].RPOSeconds == nil {
				return 0, false
			}
			return *srcs[i].RPOSeconds, true
		}},
		{"btfu_flushed_lsn", "gauge", "Stored and acknowledged WAL position, as a number.", func(i int) (float64, bool) {
			l, err := pglogrepl.ParseLSN(srcs[i].FlushedLSN)
			return float64(l), err == nil
		}},
		{"btfu_segments_stored", "gauge", "Segments held in storage.", func(i int) (float64, bool) { return float64(srcs[i].Segments), true }},
		{"btfu_segment_bytes_stored", "gauge", "Compressed bytes of the segments held in storage.", func(i int) (float64, bool) { return float64(srcs[i].SegmentBytes), true }},
		{"btfu_base_backups", "gauge", "Complete base backups held.", func(i int) (float64, bool) { return float64(srcs[i].BaseBackups), true }},
		{"btfu_base_backup_age_seconds", "gauge", "Age of the newest complete base backup.", func(i int) (float64, bool) {
			if srcs[i].LastBackup == nil {
				return 0, false
			}
			return now.Sub(srcs[i].LastBackup.At).Seconds(), true
		}},
		{"btfu_base_backup_duration_seconds", "gauge", "How long the newest complete base backup took.", func(i int) (float64, bool) {
			if srcs[i].LastBackup == nil {
				return 0, false
			}
			return srcs[i].LastBackup.Duration.Seconds(), true
		}},
		{"btfu_retained_wal_bytes", "gauge", "WAL the source keeps for btfu's slot.", func(i int) (float64, bool) {
			if srcs[i].RetainedBytes == nil {
				return 0, false
			}
			return float64(*srcs[i].RetainedBytes), true
		}},
		{"btfu_wal_budget_bytes", "gauge", "pause_wal_budget: retained WAL allowed before the slot is dropped while paused.", func(i int) (float64, bool) {
			return float64(srcs[i].WALBudget), true
		}},
		{"btfu_transactions_per_second", "gauge", "Transactions captured per second over the last 30 s.", func(i int) (float64, bool) { return srcs[i].TxPerSec, true }},
		{"btfu_received_bytes_per_second", "gauge", "Change bytes captured per second over the last 30 s.", func(i int) (float64, bool) { return srcs[i].BytesPerSec, true }},
	}
	for _, f := range fams {
		family(w, f.name, f.typ, f.help)
		for i := range srcs {
			if v, ok := f.get(i); ok {
				fmt.Fprintf(w, "%s{source=\"%s\"} %g\n", f.name, label(srcs[i].Name), v)
			}
		}
	}
	family(w, "btfu_errors_total", "counter", "Error events since btfu started, by category.")
	s.mu.Lock()
	cats := make([]string, 0, len(s.errors))
	for c := range s.errors {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	for _, c := range cats {
		fmt.Fprintf(w, "btfu_errors_total{category=\"%s\"} %d\n", label(c), s.errors[c])
	}
	s.mu.Unlock()
}
