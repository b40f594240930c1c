package cli_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/btfu/btfu/api"
	"github.com/btfu/btfu/store"
)

// btfu drill runs a drill in-process when no btfu runs (streaming the
// source meanwhile), and through the running btfu's socket otherwise;
// status shows the last drill either way.
func TestDrillCommandWithAndWithoutADaemon(t *testing.T) {
	if r := btfu(t, writeConfig(t, "[[source]]\nname = \"x\"\ndsn = \"postgres://u@h/d\"\n"), "drill"); r.code != 1 || !strings.Contains(r.stderr, "source x has no drill_target; set drill_target in") {
		t.Fatalf("drill without drill_target: %d %s", r.code, r.all())
	}
	db := source.CreateDB(t)
	source.Exec(t, db, "CREATE TABLE t(id serial PRIMARY KEY, v text); INSERT INTO t(v) SELECT 'v' || g FROM generate_series(1, 30) g; CREATE TABLE nokey(v text)")
	dir := writeConfig(t, fmt.Sprintf("[[source]]\nname = \"dr\"\ndsn = %q\nslot = \"s_%s\"\nschedule = \"off\"\nsegment_max_age = \"200ms\"\ndrill_target = %q\n",
		source.DSN(db), db, target.DSN("postgres")))
	t.Cleanup(func() {
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 's_%s' AND NOT active", db))
	})

	r := btfu(t, dir, "drill")
	if r.code != 0 || !strings.Contains(r.stderr, "btfu is not running: running it here (every source streams") {
		t.Fatalf("drill without a daemon: %d\n%s", r.code, r.all())
	}
	for _, want := range []string{"restore drill of dr PASSED at LSN", "1 table(s) restored exactly", "1 LEFT OUT", "recovery time (RTO, the restore phase)", "phases: snapshot",
		"public.t      EQUAL", "public.nokey  LEFT OUT", "no primary key"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("drill output lacks %q:\n%s", want, r.stdout)
		}
	}
	if r := btfu(t, dir, "status"); !strings.Contains(r.stdout, "last drill:  passed") {
		t.Errorf("status without a daemon lacks the last drill:\n%s", r.all())
	}

	startDaemon(t, dir)
	waitStatus(t, dir, " streaming ")
	source.Exec(t, db, "UPDATE t SET v = v || '!' WHERE id % 3 = 0")
	r = btfu(t, dir, "drill", "--json", "--source", "dr")
	var d api.Drill
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || r.code != 0 || d.Status != store.DrillPassed || d.Equal != 1 || d.Trigger != "manual" ||
		!strings.Contains(r.stderr, "btfu on ") || strings.Contains(r.stderr, "not running") {
		t.Fatalf("drill through the daemon: %d %v\n%s", r.code, err, r.all())
	}
	ss, _ := sourceStatusJSON(t, dir)
	if ss.LastDrill == nil || ss.LastDrill.LSN != d.LSN || ss.LastDrill.RTOSeconds <= 0 {
		t.Errorf("status --json last drill %+v, want the drill just run (%s)", ss.LastDrill, d.LSN)
	}
}
