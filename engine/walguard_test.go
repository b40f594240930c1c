package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/btfu/btfu/internal/pgtest"
)

// A paused source keeps its slot up to the smaller of pause_wal_budget
// and max_retained_wal: it says at start what the slot holds, warns at
// 75% of the budget, and drops the slot past it.
func TestPausedSourceUsesTheSmallerBudget(t *testing.T) {
	old := pauseCheckEvery
	pauseCheckEvery = 200 * time.Millisecond
	t.Cleanup(func() { pauseCheckEvery = old })
	e, db := newEngine(t, `max_retained_wal = "16MiB"`) // pause_wal_budget stays 1GiB
	stop := run(t, e)
	waitState(t, e, "streaming")
	stop()
	if err := e.meta.SetSourcePaused(context.Background(), 1, true); err != nil {
		t.Fatal(err)
	}
	source.Exec(t, db, "INSERT INTO t(v) SELECT repeat('w', 1000) FROM generate_series(1, 12000)") // ~13 MiB
	events := e.Subscribe(t.Context())
	run(t, e)
	if ev := waitEvent(t, events, "slot.wal_at_start"); !strings.Contains(ev.Message, "budget 16.0 MiB") {
		t.Fatalf("start report %q", ev.Message)
	}
	waitEvent(t, events, "slot.wal_warning")
	st := waitState(t, e, "paused")
	if st.WALBudget != 16<<20 || st.RetainedBytes == nil || !strings.Contains(st.Attention, "of its budget of 16.0 MiB") {
		t.Fatalf("paused source near its budget: budget %d, attention %q", st.WALBudget, st.Attention)
	}
	source.Exec(t, db, "INSERT INTO t(v) SELECT repeat('w', 1000) FROM generate_series(1, 8000)")
	if ev := waitEvent(t, events, "slot.dropped"); !strings.Contains(ev.Message, "budget of 16.0 MiB") {
		t.Fatalf("drop event %q", ev.Message)
	}
	chains, _ := e.meta.ListChains(context.Background(), 1)
	if len(chains) != 1 || chains[0].EndedAt.IsZero() || !strings.Contains(chains[0].EndReason, "WAL budget") {
		t.Fatalf("chains %+v", chains)
	}
	if n := pgtest.QueryValue[int64](t, source, db, fmt.Sprintf("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 's_%s'", db)); n != 0 {
		t.Fatal("slot still there")
	}
}
