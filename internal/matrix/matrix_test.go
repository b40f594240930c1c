package matrix

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/backup"
	"github.com/btfu/btfu/capture"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/pgbin"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/sourcedb"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact/local"
	"github.com/btfu/btfu/store/sqlite"
)

// missingClient is what btfu must say when no installed pg_dump can dump a
// server of major.
func missingClient(major int) []string {
	return []string{
		fmt.Sprintf("PostgreSQL %d needs pg_dump %d or newer, only pg_dump ", major, major),
		fmt.Sprintf("install the PostgreSQL %d client (Debian: apt-get install postgresql-client-%d) or set %s", major, major, pgbin.EnvBinDir),
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// The matrix server as a source. When the installed pg_dump can dump it,
// the engine registers it, takes the first base backup and streams the
// workload into segments. When it cannot, registration must be refused
// naming the missing client; the capture itself (registration objects,
// pgoutput protocol, segments) is then checked on a slot the test creates,
// with a chain recorded by hand in place of the base backup btfu cannot
// take.
func TestSourceCapture(t *testing.T) {
	var result string
	requireMatrix(t, "source", &result)
	ctx := context.Background()
	db := server.CreateDB(t)
	server.Exec(t, db, schema)
	r := startEngine(t, server, db, "matrix")
	if _, ok := canDump(server); ok {
		r.waitEvent(t, "source.registered")
		r.waitEvent(t, "backup.finished")
		r.waitState(t, "streaming")
		runAll(t, server, db, workload)
		mark := server.CurrentLSN(t)
		id := r.sourceID(t)
		waitCovered(t, r.e.Meta(), id, mark, r.state(t))
		cov, err := r.e.Coverage(ctx, r.name)
		if err != nil || len(cov.Ranges) != 1 || cov.Ranges[0].ToLSN < mark {
			t.Fatalf("coverage after the workload (mark %s): %+v %v", mark, cov.Ranges, err)
		}
		r.stop()
		checkDecoded(t, decodeSegments(t, r.e.Meta(), r.e.Artifacts(), id))
		checkStreamed(t, server, r.slot)
		result = "ok"
		return
	}

	// No pg_dump for this major: the engine must refuse to register.
	ev := r.waitEvent(t, "source.register_failed")
	if !containsAll(ev.Message, missingClient(server.Major)) || !strings.Contains(ev.Message, "pg_dump") {
		t.Fatalf("registration of a PostgreSQL %d source without its pg_dump: %q, want it to name the missing client and the fix", server.Major, ev.Message)
	}
	r.waitState(t, "error")
	r.stop()
	logf(t, "registration refused as expected: %s", ev.Message)

	// The capture, from a slot made here.
	src := &r.e.Config().Sources[0]
	rep, err := probe.Run(ctx, src, probe.Options{WALSample: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var kept []probe.Check
	for _, c := range rep.Checks {
		if c.Status == probe.Fail && c.ID != "pg_dump" {
			t.Errorf("probe check %s fails: %s (fix: %s)", c.ID, c.Finding, c.Fix)
		}
		if c.ID != "pg_dump" {
			kept = append(kept, c)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	rep.Checks = kept // as if the client were installed
	if err := rep.Registrable(src.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := sourcedb.Register(ctx, src, &rep.Plan, rep.Tables); err != nil {
		t.Fatalf("registration objects on PostgreSQL %d: %v", server.Major, err)
	}
	repl, err := sourcedb.ConnectReplication(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, src.Slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		SnapshotAction: "NOEXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
	repl.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		t.Fatal(err)
	}
	meta, arts, id := r.e.Meta(), r.e.Artifacts(), r.sourceID(t)
	now := time.Now()
	chain, err := meta.CreateChain(ctx, store.Chain{SourceID: id, SlotName: src.Slot, StartLSN: start, StartedAt: now, CursorLSN: start, CursorTime: now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := meta.CreateBaseBackup(ctx, store.BaseBackup{SourceID: id, ChainID: chain.ID, ConsistentLSN: start, SnapshotTime: now,
		StartedAt: now, FinishedAt: now, PgDumpVersion: "none (matrix: no base backup)", ServerVersion: server.Version, Status: store.BackupComplete}); err != nil {
		t.Fatal(err)
	}
	w := &capture.Worker{Source: src, SourceID: id, Meta: meta, Artifacts: arts, Log: testLogger(),
		SpoolDir: t.TempDir(), StatusInterval: 100 * time.Millisecond, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second,
		SequenceInterval: 200 * time.Millisecond}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	stopWorker := func() {
		if cancel == nil {
			return
		}
		cancel()
		cancel = nil
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("capture worker: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("capture worker did not stop in 30s")
		}
	}
	t.Cleanup(stopWorker)
	waitFor(t, "the capture worker streaming", func() bool {
		st := w.Status()
		if st.State == "reconnecting" || st.State == "error" {
			t.Fatalf("capture worker %s: %s", st.State, st.LastError)
		}
		return st.State == "streaming"
	})
	runAll(t, server, db, workload)
	waitCovered(t, meta, id, server.CurrentLSN(t), func() (string, string) { st := w.Status(); return st.State, st.LastError })
	stopWorker()
	checkDecoded(t, decodeSegments(t, meta, arts, id))
	checkStreamed(t, server, src.Slot)
	result = "ok (stream only)"
	logf(t, "PostgreSQL %d: capture verified on a slot made by the test; btfu itself refuses to register the source without pg_dump %d+", server.Major, server.Major)
}

// A capture of a source of the installed client's major, restored into
// the matrix server: pg_restore of the base, then replay to a mark.
func TestRestoreAsTarget(t *testing.T) {
	var result string
	requireMatrix(t, "target", &result)
	ctx := context.Background()
	db := client.CreateDB(t)
	client.Exec(t, db, schema)
	r := startEngine(t, client, db, "pg"+fmt.Sprint(client.Major))
	r.waitEvent(t, "backup.finished")
	r.waitState(t, "streaming")
	runAll(t, client, db, workload)
	mark := client.CurrentLSN(t)
	want := tableHashes(t, client, db)
	runAll(t, client, db, afterMark)
	waitCovered(t, r.e.Meta(), r.sourceID(t), client.CurrentLSN(t), r.state(t))

	plan, err := r.e.PlanRestore(ctx, r.name, restore.Target{LSN: mark})
	if err != nil {
		t.Fatal(err)
	}
	target := server.CreateDB(t)
	sum, err := r.e.Restore(ctx, r.name, plan, restore.Options{TargetDSN: server.DSN(target)})
	if err != nil {
		t.Fatalf("restore of a PostgreSQL %s capture (pg_dump %s) into PostgreSQL %s: %v\n%s", client.Version, plan.Base.PgDumpVersion, server.Version, err,
			diagnoseRestore(t, r, plan))
	}
	compareHashes(t, fmt.Sprintf("PostgreSQL %s -> %s", client.Version, server.Version), tableHashes(t, server, target), want)
	if !t.Failed() {
		logf(t, "restored %d transactions, %d rows into PostgreSQL %s", sum.Transactions, sum.Rows, server.Version)
		result = "ok"
	}
}

// diagnoseRestore runs the installed pg_restore by hand on the plan's base
// backup into a fresh database of the matrix server, to tell a btfu
// refusal from a real incompatibility.
func diagnoseRestore(t *testing.T, r *engineRun, plan *restore.Plan) string {
	t.Helper()
	ctx := context.Background()
	prog, err := pgbin.Find(ctx, "pg_restore", 0)
	if err != nil {
		return "diagnosis: no pg_restore: " + err.Error()
	}
	rc, err := r.e.Artifacts().Get(ctx, plan.Base.ArtifactKey)
	if err != nil {
		return "diagnosis: " + err.Error()
	}
	defer rc.Close()
	path := filepath.Join(t.TempDir(), "base.dump")
	f, err := os.Create(path)
	if err == nil {
		_, err = io.Copy(f, rc)
		f.Close()
	}
	if err != nil {
		return "diagnosis: " + err.Error()
	}
	db := server.CreateDB(t)
	out, err := exec.CommandContext(ctx, prog.Path, "--no-owner", "--exit-on-error", "-d", server.DSN(db), path).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("diagnosis: %s by hand into PostgreSQL %s fails too: %v: %s", prog, server.Version, err, strings.TrimSpace(string(out)))
	}
	n := pgtest.QueryValue[int64](t, server, db, "SELECT count(*) FROM accounts")
	return fmt.Sprintf("diagnosis: %s by hand restores the same base backup into PostgreSQL %s fine (accounts: %d rows), so the failure is btfu's, not pg_restore's", prog, server.Version, n)
}

// Base backup, stream and restore to a mark on the matrix server itself;
// or, when no installed pg_dump can dump it, the refusals that name the
// missing client.
func TestFullCycle(t *testing.T) {
	var result string
	requireMatrix(t, "cycle", &result)
	ctx := context.Background()
	db := server.CreateDB(t)
	server.Exec(t, db, schema)

	if _, ok := canDump(server); !ok {
		expectRefusal(t, db)
		result = "refused-as-expected"
		return
	}

	r := startEngine(t, server, db, "cycle")
	reg := r.waitEvent(t, "source.registered")
	logf(t, "registered: %v", reg.Attrs)
	r.waitEvent(t, "backup.finished")
	r.waitState(t, "streaming")
	rep, err := r.e.Probe(ctx, r.name)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := rep.Check("pg_dump"); !ok || c.Status != probe.OK {
		t.Errorf("probe pg_dump check on PostgreSQL %d: %+v", server.Major, c)
	}
	runAll(t, server, db, workload)
	mark := server.CurrentLSN(t)
	want := tableHashes(t, server, db)
	runAll(t, server, db, afterMark)
	latest := tableHashes(t, server, db)
	waitCovered(t, r.e.Meta(), r.sourceID(t), server.CurrentLSN(t), r.state(t))

	for _, m := range []struct {
		name   string
		target restore.Target
		want   map[string]string
	}{{"to the mark", restore.Target{LSN: mark}, want}, {"to the latest", restore.Target{Latest: true}, latest}} {
		plan, err := r.e.PlanRestore(ctx, r.name, m.target)
		if err != nil {
			t.Fatal(err)
		}
		target := server.CreateDB(t)
		if _, err := r.e.Restore(ctx, r.name, plan, restore.Options{TargetDSN: server.DSN(target)}); err != nil {
			t.Fatalf("restore %s: %v", m.name, err)
		}
		compareHashes(t, "restore "+m.name, tableHashes(t, server, target), m.want)
	}
	if !t.Failed() {
		result = "ok"
	}
}

// expectRefusal: the probe's pg_dump check fails naming the missing client
// and the fix, and a base backup is refused before it creates anything.
func expectRefusal(t *testing.T, db string) {
	t.Helper()
	ctx := context.Background()
	major := server.Major
	want := missingClient(major)
	dump := installedDump(t)

	src := &sourceConfig(t, server, db, "cycle").Sources[0]
	t.Cleanup(func() {
		server.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE '%s%%' AND NOT active", src.Slot))
	})
	rep, err := probe.Run(ctx, src, probe.Options{WALSample: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c, ok := rep.Check("pg_dump")
	if !ok || c.Status != probe.Fail || !containsAll(c.Finding+" "+c.Fix, want) || !strings.Contains(c.Finding, dump.Version) {
		t.Errorf("probe pg_dump check on PostgreSQL %d with only pg_dump %s: %+v; want a fail naming the missing client and the fix", major, dump.Version, c)
	} else {
		logf(t, "probe: %s: %s (fix: %s)", c.Status, c.Finding, c.Fix)
	}

	meta, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "btfu.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	arts, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rec, err := meta.UpsertSource(ctx, store.Source{Name: src.Name, SlotName: src.Slot, PublicationName: src.Publication})
	if err != nil {
		t.Fatal(err)
	}
	b, err := backup.Take(ctx, backup.Request{Source: src, SourceID: rec.ID, Meta: meta, Artifacts: arts, Main: true})
	if err == nil {
		t.Fatalf("base backup of PostgreSQL %d with only pg_dump %s succeeded: %+v", major, dump.Version, b)
	}
	if !containsAll(err.Error(), want) || !strings.Contains(err.Error(), "pg_dump") {
		t.Errorf("base backup of PostgreSQL %d refused with %q; want it to name the missing pg_dump and the fix", major, err)
	} else {
		logf(t, "base backup refused as expected: %v", err)
	}
	if b.ID != 0 {
		t.Errorf("a refused base backup left a record: %+v", b)
	}
	if chains, _ := meta.ListChains(ctx, rec.ID); len(chains) != 0 {
		t.Errorf("a refused base backup left chains: %+v", chains)
	}
	if n := pgtest.QueryValue[int64](t, server, "postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE $1 || '%'", src.Slot); n != 0 {
		t.Errorf("a refused base backup left %d slot(s)", n)
	}
	if !t.Failed() {
		note(t, "refused as expected: %v", err)
	}
}
