package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/store"
)

// POST /v1/sources/{name}/drill runs a restore drill now and answers when
// it has finished, passed or failed, with its record (Drill); a client
// that goes away cancels it.

// drillRunner is what the drill route needs from the engine.
type drillRunner interface {
	Drill(ctx context.Context, name, trigger string) (store.Drill, error)
}

var _ drillRunner = (*engine.Engine)(nil)

// Drill is the answer to POST /v1/sources/{name}/drill.
type Drill struct {
	Source string `json:"source"`
	*engine.DrillInfo
}

func (s *Server) drill(w http.ResponseWriter, r *http.Request) {
	sc, ok := s.source(w, r)
	if !ok {
		return
	}
	dr, ok := s.eng.(drillRunner)
	if !ok {
		writeError(w, http.StatusNotImplemented, errors.New("this engine runs no drills"))
		return
	}
	d, err := dr.Drill(r.Context(), sc.Name, "manual")
	if d.ID == 0 {
		// Refused before it started (no drill_target, paused, one running).
		code := http.StatusConflict
		if r.Context().Err() != nil {
			code = http.StatusServiceUnavailable
		}
		writeError(w, code, fmt.Errorf("drill of %s: %w", sc.Name, err))
		return
	}
	writeJSON(w, http.StatusOK, Drill{Source: sc.Name, DrillInfo: engine.NewDrillInfo(d)})
}

// writeDrillMetrics writes each source's last finished drill: result,
// age, measured recovery time, tables that differed.
func writeDrillMetrics(w io.Writer, st engine.Status, now time.Time) {
	for _, f := range []struct {
		name, help string
		get        func(d *engine.DrillInfo) value
	}{
		{"btfu_drill_passed", "1 when the source's last restore drill restored every compared table exactly, 0 when it failed.", func(d *engine.DrillInfo) value {
			return boolean(d.Status == store.DrillPassed)
		}},
		{"btfu_drill_age_seconds", "Time since the source's last restore drill finished.", func(d *engine.DrillInfo) value {
			return float(now.Sub(*d.FinishedAt).Seconds())
		}},
		{"btfu_drill_rto_seconds", "Measured recovery time of the last restore drill: its restore phase (scratch database, pg_restore, replay to the drill's LSN, sequences).", func(d *engine.DrillInfo) value {
			return float(d.RTOSeconds)
		}},
		{"btfu_drill_tables_differ", "Tables the last restore drill found different or missing in the restore.", func(d *engine.DrillInfo) value {
			return integer(int64(d.Differ))
		}},
	} {
		writeFamily(w, f.name, "gauge", f.help)
		for _, ss := range st.Sources {
			if d := ss.LastDrill; d != nil && d.FinishedAt != nil {
				fmt.Fprintf(w, "%s{source=\"%s\"} %s\n", f.name, labelValue(ss.Name), f.get(d))
			}
		}
	}
}
