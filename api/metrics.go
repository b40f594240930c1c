package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/notify"
)

// segmentCounter makes btfu_segments_stored_total a counter although
// retention deletes segment records: it counts every segment id above the
// highest one seen before (ids only grow), starting with the segments held
// when the API first looked.
type segmentCounter struct {
	maxID int64
	total int64
}

// countSegments updates the stored-segment counters from each source's
// coverage and returns them; a source whose coverage cannot be read has
// no entry.
func (s *Server) countSegments(ctx context.Context, st engine.Status) map[string]int64 {
	out := map[string]int64{}
	for _, ss := range st.Sources {
		cov, err := s.eng.Coverage(ctx, ss.Name)
		if err != nil {
			continue
		}
		s.mu.Lock()
		c := s.segments[ss.Name]
		if c == nil {
			c = &segmentCounter{}
			s.segments[ss.Name] = c
		}
		newMax := c.maxID
		for _, g := range cov.Segments {
			if g.ID > c.maxID {
				c.total++
				newMax = max(newMax, g.ID)
			}
		}
		c.maxID = newMax
		out[ss.Name] = c.total
		s.mu.Unlock()
	}
	return out
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	st, err := s.eng.Status(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("status: %w", err))
		return
	}
	stored := s.countSegments(r.Context(), st)
	s.mu.Lock()
	errs := make(map[errorKey]int64, len(s.errors))
	for k, v := range s.errors {
		errs[k] = v
	}
	s.mu.Unlock()
	var buf bytes.Buffer
	writeMetrics(&buf, st, stored, errs, time.Now())
	writeDrillMetrics(&buf, st, time.Now()) // drill.go
	if ns, ok := s.eng.(interface{ NotificationStats() []notify.ChannelStats }); ok {
		writeNotifyMetrics(&buf, ns.NotificationStats())
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// A sample value, already formatted; "" means no sample.
type value string

func integer(n int64) value   { return value(strconv.FormatInt(n, 10)) }
func unsigned(n uint64) value { return value(strconv.FormatUint(n, 10)) }
func float(f float64) value   { return value(strconv.FormatFloat(f, 'g', -1, 64)) } // NaN, +Inf, -Inf as Prometheus spells them

func boolean(b bool) value {
	if b {
		return "1"
	}
	return "0"
}

// writeMetrics writes the Prometheus text exposition (format 0.0.4) of
// st: each family's HELP and TYPE, then one sample per source that has a
// value.
func writeMetrics(w io.Writer, st engine.Status, segmentsStored map[string]int64, errs map[errorKey]int64, now time.Time) {
	type family struct {
		name, typ, help string
		get             func(ss *engine.SourceStatus) value
	}
	families := []family{
		{"btfu_source_up", "gauge", "1 when the source's changes are being stored (streaming, also beside a later base backup), 0 during its first base backup and when paused, reconnecting, failed or stopped.", func(ss *engine.SourceStatus) value {
			return boolean(ss.Streaming)
		}},
		{"btfu_source_healthy", "gauge", "1 when the source streams with nothing needing attention (what GET /health checks).", func(ss *engine.SourceStatus) value {
			return boolean(ss.Streaming && ss.Attention == "")
		}},
		{"btfu_source_encrypted", "gauge", "1 when the source's new artifacts are encrypted with age (encrypt_to), 0 when they are stored unencrypted.", func(ss *engine.SourceStatus) value {
			return boolean(ss.EncryptedTo > 0)
		}},
		{"btfu_lag_bytes", "gauge", "WAL bytes between the source's current position and what btfu has stored.", func(ss *engine.SourceStatus) value {
			if ss.LagBytes == nil {
				return ""
			}
			return integer(*ss.LagBytes)
		}},
		{"btfu_rpo_seconds", "gauge", "Lag in seconds: age of the newest stored commit or keepalive, what a failure now would lose at most.", func(ss *engine.SourceStatus) value {
			if ss.RPOSeconds == nil {
				return ""
			}
			return float(*ss.RPOSeconds)
		}},
		{"btfu_max_lag_seconds", "gauge", "The source's max_lag: the RPO over which it needs attention.", func(ss *engine.SourceStatus) value {
			return float(ss.MaxLagSeconds)
		}},
		{"btfu_flushed_lsn", "gauge", "Stored and acknowledged WAL position (LSN as a number).", func(ss *engine.SourceStatus) value {
			l, err := pglogrepl.ParseLSN(ss.FlushedLSN)
			if err != nil {
				return ""
			}
			return unsigned(uint64(l))
		}},
		{"btfu_segments_stored_total", "counter", "Segments stored, counted from those held when btfu started.", func(ss *engine.SourceStatus) value {
			n, ok := segmentsStored[ss.Name]
			if !ok {
				return ""
			}
			return integer(n)
		}},
		{"btfu_segments", "gauge", "Segments held in storage.", func(ss *engine.SourceStatus) value { return integer(int64(ss.Segments)) }},
		{"btfu_segment_bytes_stored", "gauge", "Compressed bytes of the segments held in storage.", func(ss *engine.SourceStatus) value { return integer(ss.SegmentBytes) }},
		{"btfu_base_backups", "gauge", "Complete base backups held.", func(ss *engine.SourceStatus) value { return integer(int64(ss.BaseBackups)) }},
		{"btfu_base_backup_age_seconds", "gauge", "Age of the newest complete base backup.", func(ss *engine.SourceStatus) value {
			if ss.LastBackup == nil {
				return ""
			}
			return float(now.Sub(ss.LastBackup.At).Seconds())
		}},
		{"btfu_base_backup_duration_seconds", "gauge", "How long the newest complete base backup took.", func(ss *engine.SourceStatus) value {
			if ss.LastBackup == nil {
				return ""
			}
			return float(ss.LastBackup.Duration.Seconds())
		}},
		{"btfu_retained_wal_bytes", "gauge", "WAL the source keeps for btfu's slot.", func(ss *engine.SourceStatus) value {
			if ss.RetainedBytes == nil {
				return ""
			}
			return integer(*ss.RetainedBytes)
		}},
		{"btfu_wal_budget_bytes", "gauge", "Retained WAL past which btfu drops the slot (a gap, then a new base backup): max_retained_wal, or while paused the smaller of it and pause_wal_budget.", func(ss *engine.SourceStatus) value {
			return integer(ss.WALBudget)
		}},
		{"btfu_tables_left_out", "gauge", "Tables not backed up: no usable replica identity (tables_without_key = leave_out), or they lost it.", func(ss *engine.SourceStatus) value {
			return integer(int64(len(ss.LeftOut)))
		}},
		{"btfu_transactions_per_second", "gauge", "Transactions captured per second over the last 30 s.", func(ss *engine.SourceStatus) value { return float(ss.TxPerSec) }},
		{"btfu_received_bytes_per_second", "gauge", "Change bytes captured per second over the last 30 s.", func(ss *engine.SourceStatus) value { return float(ss.BytesPerSec) }},
	}
	for _, f := range families {
		writeFamily(w, f.name, f.typ, f.help)
		for i := range st.Sources {
			if v := f.get(&st.Sources[i]); v != "" {
				fmt.Fprintf(w, "%s{source=\"%s\"} %s\n", f.name, labelValue(st.Sources[i].Name), v)
			}
		}
	}

	writeFamily(w, "btfu_errors_total", "counter", "Error events since btfu started, by source (empty: the engine) and category (the event kind's first part).")
	keys := make([]errorKey, 0, len(errs))
	for k := range errs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].source != keys[j].source {
			return keys[i].source < keys[j].source
		}
		return keys[i].category < keys[j].category
	})
	for _, k := range keys {
		fmt.Fprintf(w, "btfu_errors_total{source=\"%s\",category=\"%s\"} %d\n", labelValue(k.source), labelValue(k.category), errs[k])
	}

	writeFamily(w, "btfu_capture_errors_total", "counter", "Failed capture attempts by source and category (connection, auth, publication, slot, source, decode, store, base_backup, capture), counted since the source's worker started.")
	for _, ss := range st.Sources {
		cats := make([]string, 0, len(ss.CaptureErrors))
		for c := range ss.CaptureErrors {
			cats = append(cats, c)
		}
		sort.Strings(cats)
		for _, c := range cats {
			fmt.Fprintf(w, "btfu_capture_errors_total{source=\"%s\",category=\"%s\"} %d\n", labelValue(ss.Name), labelValue(c), ss.CaptureErrors[c])
		}
	}
}

// writeNotifyMetrics writes each notification channel's counters.
func writeNotifyMetrics(w io.Writer, stats []notify.ChannelStats) {
	for _, f := range []struct {
		name, help string
		get        func(notify.ChannelStats) int64
	}{
		{"btfu_notifications_sent_total", "Notifications delivered, by channel.", func(s notify.ChannelStats) int64 { return s.Sent }},
		{"btfu_notifications_failed_total", "Notifications given up after their last attempt (retries with backoff), by channel.", func(s notify.ChannelStats) int64 { return s.Failed }},
		{"btfu_notifications_dropped_total", "Notifications dropped because the channel's queue was full (its endpoint slow or down), by channel.", func(s notify.ChannelStats) int64 { return s.Dropped }},
	} {
		writeFamily(w, f.name, "counter", f.help)
		for _, s := range stats {
			fmt.Fprintf(w, "%s{channel=\"%s\",kind=\"%s\"} %d\n", f.name, labelValue(s.Channel), labelValue(s.Kind), f.get(s))
		}
	}
}

func writeFamily(w io.Writer, name, typ, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, helpText(help), name, typ)
}

// labelValue escapes a label value: backslash, double quote, line feed.
func labelValue(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}

// helpText escapes a HELP docstring: backslash and line feed.
func helpText(v string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(v)
}
