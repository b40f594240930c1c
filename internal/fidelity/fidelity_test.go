// Package fidelity holds the randomized point-in-time recovery test: a
// random schema and concurrent random transactions from a seed while btfu
// streams and takes a scheduled base backup, marks at random moments, and
// restores to every chosen mark (by time and by LSN, from each base backup
// that applies) compared with what the source held there.
//
// make test runs a fixed seed set; make soak runs random seeds for longer.
// Replay a failure with the seed it prints:
//
//	BTFU_FIDELITY_SEEDS=<seed> go test -count=1 -run TestRandomizedPointInTimeRecovery ./internal/fidelity
//
// The seed fixes the schema and every worker's sequence of transactions;
// how concurrent workers interleave is up to the scheduler.
package fidelity

import (
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/store"
)

var source *pgtest.Cluster

func TestMain(m *testing.M) {
	// A small logical_decoding_work_mem makes the server stream the large
	// transactions (protocol 2): streamed commits and aborts, subtransaction
	// aborts inside a streamed transaction.
	c, err := pgtest.Start(pgtest.Options{Settings: map[string]string{"logical_decoding_work_mem": "64kB", "deadlock_timeout": "100ms"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	source = c
	code := m.Run()
	_ = c.Stop()
	os.Exit(code)
}

// settings of one run, from the environment (make soak raises them).
type settings struct {
	seeds   []uint64
	bases   int // scheduled base backups to run through
	workers int
}

func loadSettings(t *testing.T) settings {
	s := settings{seeds: []uint64{1, 2}, bases: 1, workers: 3}
	if v := os.Getenv("BTFU_FIDELITY_SEEDS"); v != "" {
		s.seeds = nil
		if n, ok := strings.CutPrefix(v, "random:"); ok {
			k, err := strconv.Atoi(n)
			if err != nil {
				t.Fatalf("BTFU_FIDELITY_SEEDS=%s: want random:N", v)
			}
			for i := 0; i < k; i++ {
				s.seeds = append(s.seeds, rand.Uint64()%1000000)
			}
		} else {
			for _, f := range strings.Split(v, ",") {
				n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
				if err != nil {
					t.Fatalf("BTFU_FIDELITY_SEEDS=%s: want seeds like 1,2,3 or random:N", v)
				}
				s.seeds = append(s.seeds, n)
			}
		}
	}
	if v := os.Getenv("BTFU_FIDELITY_BASES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("BTFU_FIDELITY_BASES=%s: want a number of scheduled base backups, at least 1", v)
		}
		s.bases = n
	}
	return s
}

// mark is what the source held at one instant: every transaction before it
// committed, none after it started.
type mark struct {
	at     time.Time
	lsn    pglogrepl.LSN
	hashes map[string]string
	rows   map[string][]string // md5 of each row's text, sorted: a failure names the rows that differ
	texts  map[string]string   // md5 -> the row's text, shortened
	seqs   map[string]int64    // last value handed out (absent: none yet)
}

func TestRandomizedPointInTimeRecovery(t *testing.T) {
	s := loadSettings(t)
	for _, seed := range s.seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("replay with: BTFU_FIDELITY_SEEDS=%d go test -count=1 -run TestRandomizedPointInTimeRecovery ./internal/fidelity", seed)
				}
			})
			runSeed(t, seed, s)
		})
	}
}

func runSeed(t *testing.T, seed uint64, s settings) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, 0x6274667521))
	db := source.CreateDB(t)
	ddl, m, cfgFull := newSchema(r)
	t.Logf("seed %d: %d tables in %s", seed, len(m.tables), db)
	source.Exec(t, db, ddl)
	// Rows before registration: the first base backup holds them.
	{
		conn := source.Connect(t, db)
		g := &gen{m: m, r: rand.New(rand.NewPCG(seed, 1))}
		st := &stats{}
		for _, tb := range m.tables {
			if err := runTxn(ctx, conn, txn{steps: []string{g.bulk(*tb), g.insert(*tb, 20)}}, st); err != nil || len(st.unexpected) > 0 {
				t.Fatalf("initial rows: %v %v", err, st.unexpected)
			}
		}
	}
	slot := "s_" + db
	t.Cleanup(func() {
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '%s' AND NOT active", slot))
	})

	dir := t.TempDir()
	quoted := make([]string, len(cfgFull))
	for i, n := range cfgFull {
		quoted[i] = strconv.Quote(n)
	}
	cfg, err := config.Parse(filepath.Join(dir, "config.toml"), []byte(fmt.Sprintf(`
[metadata]
path = %q
[storage]
path = %q
[engine]
spool_dir = %q
[[source]]
name = "fid"
dsn = %q
slot = %q
schedule = "* * * * *"
replica_identity_full = [%s]
`, filepath.Join(dir, "btfu.db"), filepath.Join(dir, "data"), t.TempDir(), source.DSN(db), slot, strings.Join(quoted, ", "))))
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	events := e.Subscribe(t.Context())
	runCtx, stopEngine := context.WithCancel(ctx)
	engineDone := make(chan error, 1)
	go func() { engineDone <- e.Run(runCtx) }()
	defer stopEngine()

	// The first base backup (at registration), then the workload until
	// the scheduled ones have run and marks were taken after them.
	basesDone := make(chan struct{}, 16)
	go func() {
		for ev := range events {
			switch ev.Kind {
			case "backup.finished":
				basesDone <- struct{}{}
			case "backup.failed", "capture.failed", "source.register_failed", "schedule.failed":
				t.Errorf("engine: %s: %s", ev.Kind, ev.Message)
			}
		}
	}()
	select {
	case <-basesDone:
	case <-time.After(2 * time.Minute):
		t.Fatal("no first base backup in 2 minutes")
	}

	var quiesce sync.RWMutex // writers hold it shared; a mark holds it alone
	st := &stats{}
	wctx, stopWorkers := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := 0; w < s.workers; w++ {
		conn := source.Connect(t, db)
		g := &gen{m: m, r: rand.New(rand.NewPCG(seed, uint64(100+w)))}
		pause := rand.New(rand.NewPCG(seed, uint64(200+w)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wctx.Err() == nil {
				tx := g.next(w == 0)
				quiesce.RLock()
				err := runTxn(wctx, conn, tx, st)
				quiesce.RUnlock()
				if err != nil && wctx.Err() == nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				time.Sleep(time.Duration(5+pause.IntN(60)) * time.Millisecond)
			}
		}()
	}

	mr := rand.New(rand.NewPCG(seed, 300))
	markConn := source.Connect(t, db)
	var marks []mark
	scheduled, marksAfter := 0, 0
	// The schedule fires every minute: a base in the workload's first
	// seconds does not count as one "in the middle", so that every run
	// has marks before and after the base it counts, wherever in the
	// minute it starts.
	workStart := time.Now()
	deadline := workStart.Add(time.Duration(s.bases)*time.Minute + 3*time.Minute)
	for scheduled < s.bases || marksAfter < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("after %d scheduled base backups and %d marks the run did not finish in time", scheduled, len(marks))
		}
		time.Sleep(time.Duration(1500+mr.IntN(3500)) * time.Millisecond)
		select {
		case <-basesDone:
			if time.Since(workStart) > 20*time.Second {
				scheduled++
				marksAfter = 0
			}
		default:
		}
		quiesce.Lock()
		mk := takeMark(t, markConn)
		quiesce.Unlock()
		marks = append(marks, mk)
		if scheduled >= s.bases {
			marksAfter++
		}
	}
	stopWorkers()
	wg.Wait()
	t.Logf("seed %d: %d committed, %d rolled back, %d failed (deadlocks, concurrent DDL) transactions; %d marks; %d tables created by DDL",
		seed, st.committed.Load(), st.rolledBack.Load(), st.failed.Load(), len(marks), m.created)
	if len(st.unexpected) > 0 {
		t.Fatalf("the generator produced statements the source refused:\n%s", strings.Join(st.unexpected, "\n"))
	}
	if st.committed.Load() < 50 {
		t.Fatalf("only %d transactions committed", st.committed.Load())
	}

	// Everything up to the last mark stored, then stop btfu: its shutdown
	// snapshot of the sequences is after every mark.
	last := marks[len(marks)-1]
	waitUntil(t, func() bool {
		_, errLSN := e.PlanRestore(ctx, "fid", restore.Target{LSN: last.lsn})
		_, errTime := e.PlanRestore(ctx, "fid", restore.Target{Time: last.at})
		return errLSN == nil && errTime == nil
	}, "coverage up to the last mark")
	stopEngine()
	if err := <-engineDone; err != nil {
		t.Fatalf("engine: %v", err)
	}

	src, err := e.SourceRecord(ctx, "fid")
	if err != nil {
		t.Fatal(err)
	}
	all, err := e.Meta().ListBaseBackups(ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	var bases []store.BaseBackup
	for _, b := range all {
		if b.Status == store.BackupComplete {
			bases = append(bases, b)
		}
	}
	slices.SortFunc(bases, func(a, b store.BaseBackup) int { return int(a.ConsistentLSN) - int(b.ConsistentLSN) })
	if len(bases) < 1+s.bases {
		t.Fatalf("%d complete base backups, want %d", len(bases), 1+s.bases)
	}

	// Up to two marks before the last scheduled base and two after it.
	var before, after []mark
	for _, mk := range marks {
		if mk.lsn < bases[len(bases)-1].ConsistentLSN {
			before = append(before, mk)
		} else {
			after = append(after, mk)
		}
	}
	mr.Shuffle(len(before), func(i, j int) { before[i], before[j] = before[j], before[i] })
	chosen := append(before[:min(2, len(before))], after...)
	if len(after) > 2 {
		chosen = append(before[:min(2, len(before))], after[len(after)-2:]...)
	}
	restores := 0
	for i, mk := range chosen {
		for _, target := range []restore.Target{{Time: mk.at}, {LSN: mk.lsn}} {
			// The newest fitting base, and the first base when another one
			// fits too (its replay crosses the newer base's consistent point).
			for _, key := range []string{"", bases[0].ArtifactKey} {
				if key != "" && !usesNewer(target, bases) {
					continue
				}
				plan, err := restore.MakePlanFrom(ctx, e.Meta(), src.ID, target, key)
				if err != nil {
					t.Fatalf("mark %d (%s): plan from %q: %v", i, target, key, err)
				}
				checkRestore(t, e, plan, mk, fmt.Sprintf("mark %d at %s (LSN %s) by %s from base %s", i, mk.at.Format(time.RFC3339Nano), mk.lsn, kindOf(target), plan.Base.ArtifactKey))
				restores++
			}
		}
	}
	t.Logf("seed %d: %d restores compared with the source", seed, restores)
}

// usesNewer: a base newer than the first also fits the target, so
// restoring from the first one is a different path worth checking.
func usesNewer(t restore.Target, bases []store.BaseBackup) bool {
	for _, b := range bases[1:] {
		if t.LSN != 0 && b.ConsistentLSN <= t.LSN {
			return true
		}
		if !t.Time.IsZero() && !b.SnapshotTime.After(t.Time) {
			return true
		}
	}
	return false
}

func kindOf(t restore.Target) string {
	if t.LSN != 0 {
		return "LSN"
	}
	return "time"
}

func takeMark(t *testing.T, conn *pgx.Conn) mark {
	t.Helper()
	ctx := context.Background()
	var mk mark
	var lsn string
	if err := conn.QueryRow(ctx, "SELECT clock_timestamp(), pg_current_wal_insert_lsn()::text").Scan(&mk.at, &lsn); err != nil {
		t.Fatal(err)
	}
	var err error
	if mk.lsn, err = pglogrepl.ParseLSN(lsn); err != nil {
		t.Fatal(err)
	}
	mk.hashes, mk.rows, mk.texts = hashes(t, conn)
	mk.seqs = sequences(t, conn)
	return mk
}

// hashes: every user table (partitioned roots and their partitions) ->
// its row count and an md5 of its rows' md5s in order; the rows' md5s;
// and the rows' texts by md5, the middle of long ones (TOASTed values)
// left out.
func hashes(t *testing.T, conn *pgx.Conn) (map[string]string, map[string][]string, map[string]string) {
	t.Helper()
	ctx := context.Background()
	rows, err := conn.Query(ctx, `SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
		WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'btfu') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out, all, texts := map[string]string{}, map[string][]string{}, map[string]string{}
	for _, n := range names {
		var sums []string
		rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT md5(t), CASE WHEN octet_length(t) > 1500 THEN left(t, 300) || ' … ' || right(t, 900) ELSE t END
			FROM %s x, LATERAL (SELECT x::text OFFSET 0) r(t) ORDER BY 1`, n))
		if err != nil {
			t.Fatal(err)
		}
		var sum, text string
		if _, err := pgx.ForEachRow(rows, []any{&sum, &text}, func() error {
			sums = append(sums, sum)
			texts[sum] = text
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		out[n] = fmt.Sprintf("%d:%x", len(sums), md5.Sum([]byte(strings.Join(sums, ""))))
		all[n] = sums
	}
	return out, all, texts
}

// rowDiff lists the rows of a table only the restore has and those only
// the source had at the mark.
func rowDiff(got, want []string, gotTexts, wantTexts map[string]string) string {
	only := func(a, b []string) []string {
		b = slices.Clone(b)
		var out []string
		for _, x := range a {
			if i, ok := slices.BinarySearch(b, x); ok {
				b = slices.Delete(b, i, i+1)
			} else {
				out = append(out, x)
			}
		}
		return out
	}
	var b strings.Builder
	extra, missing := only(got, want), only(want, got)
	fmt.Fprintf(&b, "%d rows only in the restore, %d only on the source:", len(extra), len(missing))
	for i, r := range extra {
		if i == 20 {
			b.WriteString("\n  + …")
			break
		}
		fmt.Fprintf(&b, "\n  + %s", gotTexts[r])
	}
	for i, r := range missing {
		if i == 20 {
			b.WriteString("\n  - …")
			break
		}
		fmt.Fprintf(&b, "\n  - %s", wantTexts[r])
	}
	return b.String()
}

func sequences(t *testing.T, conn *pgx.Conn) map[string]int64 {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences
		WHERE schemaname <> 'btfu' AND last_value IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	var name string
	var v int64
	if _, err := pgx.ForEachRow(rows, []any{&name, &v}, func() error { out[name] = v; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkRestore restores plan into a new database and compares it with
// the mark: every table's rows, and no sequence behind the source's.
func checkRestore(t *testing.T, e *engine.Engine, plan *restore.Plan, mk mark, what string) {
	t.Helper()
	ctx := context.Background()
	target := source.CreateDB(t)
	defer source.Exec(t, "postgres", "DROP DATABASE "+target)
	sum, err := e.Restore(ctx, "fid", plan, restore.Options{TargetDSN: source.DSN(target)})
	if err != nil {
		t.Errorf("%s: restore: %v", what, err)
		return
	}
	conn := source.Connect(t, target)
	defer conn.Close(ctx)
	got, gotRows, gotTexts := hashes(t, conn)
	for name, want := range mk.hashes {
		if got[name] != want {
			t.Errorf("%s: table %s restored as %s, the source held %s; %s", what, name, got[name], want, rowDiff(gotRows[name], mk.rows[name], gotTexts, mk.texts))
		}
	}
	for name := range got {
		if _, ok := mk.hashes[name]; !ok {
			t.Errorf("%s: table %s restored, but the source did not have it at the mark", what, name)
		}
	}
	seqs := sequences(t, conn)
	for name, v := range mk.seqs {
		if seqs[name] < v {
			t.Errorf("%s: sequence %s restored at %d, behind the %d the source had handed out: it would hand a value out twice", what, name, seqs[name], v)
		}
	}
	if !t.Failed() {
		t.Logf("%s: equal (%d transactions, %d rows replayed in %s)", what, sum.Transactions, sum.Rows, sum.Took.Round(time.Millisecond))
	}
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
