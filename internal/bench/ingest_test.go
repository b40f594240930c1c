// Package bench holds btfu's benchmarks (make bench). They start their own
// PostgreSQL clusters, build a backlog in a slot, and time how long each
// consumer takes to catch up with it: btfu's capture worker, pg_recvlogical
// writing pgoutput to a file, and a native subscription on a second
// cluster. Results are printed as a table; nothing here is a pass/fail
// timing test.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/capture"
	"github.com/btfu/btfu/internal/capturetest"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/internal/s3test"
	"github.com/btfu/btfu/pgbin"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact/s3"
)

type workload struct {
	name  string
	setup string // run before consumers attach
	load  func(t testing.TB, c *pgtest.Cluster, db string)
}

var workloads = []workload{
	{"pgbench -t 2000 -c 4", "", func(t testing.TB, c *pgtest.Cluster, db string) {
		pgbench(t, c, db, "-n", "-c", "4", "-j", "2", "-t", "2000")
	}},
	{"1M-row INSERT", "CREATE TABLE big(id int PRIMARY KEY, v text)", func(t testing.TB, c *pgtest.Cluster, db string) {
		c.Exec(t, db, "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 1000000) g")
	}},
	{"1M-row UPDATE", "CREATE TABLE big(id int PRIMARY KEY, v text); INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 1000000) g", func(t testing.TB, c *pgtest.Cluster, db string) {
		c.Exec(t, db, "UPDATE big SET v = v || 'x'")
	}},
	// REPLICA IDENTITY FULL: every old row is sent and matched by all its
	// columns (replay reduces such a table's changes per row, named by
	// all its values). The primary key lets both replay and the
	// subscription find the row through an index.
	{"200k-row UPDATE, REPLICA IDENTITY FULL", "CREATE TABLE fullt(id int PRIMARY KEY, v text); ALTER TABLE fullt REPLICA IDENTITY FULL; INSERT INTO fullt SELECT g, md5(g::text) FROM generate_series(1, 200000) g", func(t testing.TB, c *pgtest.Cluster, db string) {
		c.Exec(t, db, "UPDATE fullt SET v = v || 'x'")
	}},
}

// copyTables: workloads whose replay is compared with a plain COPY of the
// rows they inserted into an empty table of the same schema.
var copyTables = map[string]string{"1M-row INSERT": "big"}

func pgbench(t testing.TB, c *pgtest.Cluster, db string, args ...string) {
	t.Helper()
	bin := filepath.Join(c.BinDir, "pgbench")
	cmd := exec.Command(bin, append([]string{"-h", c.Host, "-p", fmt.Sprint(c.Port), "-U", "postgres"}, append(args, db)...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgbench %v: %v\n%s", args, err, out)
	}
}

type result struct {
	workload        string
	changes         int64
	btfu, recv, sub time.Duration
	null            time.Duration // pg_recvlogical -f /dev/null: the walsender's own send rate
	allocs          uint64        // heap allocations of the process while btfu caught up
	peakRSS         int64         // bytes, the whole benchmark process while btfu caught up
	replayRSS       int64         // bytes, the whole benchmark process while btfu restored
	replay          time.Duration
	replayRows      int64
	copyTook        time.Duration // plain COPY of the inserted rows (copyTables), else 0
	direct          time.Duration // the workload's own SQL run on a copy on the replay's cluster
}

// resetPeakRSS resets the kernel's high-water mark of this process's RSS
// (Linux: /proc/self/clear_refs 5), so peakRSS measures one phase.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkIngest times the catch-up of the same backlog by three
// consumers. Run with: go test -run '^$' -bench Ingest ./internal/bench
func BenchmarkIngest(b *testing.B) {
	src, err := pgtest.Start(pgtest.Options{Settings: map[string]string{"max_wal_size": "4GB", "checkpoint_timeout": "30min"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { src.Stop() }) // after the sources set up on it
	sub, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sub.Stop() })
	var results []result
	for _, w := range workloads {
		results = append(results, runWorkload(b, src, sub, w))
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tchanges\tbtfu\tpg_recvlogical to a file\tto /dev/null\tsubscription\tbtfu/null\tbtfu/subscription\tbtfu changes/s\tallocs/change\tpeak RSS MiB\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.0f\t%.1f\t%d\t\n", r.workload, r.changes, r.btfu.Round(time.Millisecond), r.recv.Round(time.Millisecond), r.null.Round(time.Millisecond), r.sub.Round(time.Millisecond),
			r.btfu.Seconds()/r.null.Seconds(), r.btfu.Seconds()/r.sub.Seconds(), float64(r.changes)/r.btfu.Seconds(), float64(r.allocs)/float64(max(r.changes, 1)), r.peakRSS>>20)
	}
	tw.Flush()
	fmt.Println("Catch-up of the same backlog. Each consumer's time includes waiting for the keepalive that confirms it reached the backlog's end (up to a status interval).")

	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\trows replayed\tbtfu replay\trows/s\tsubscription (decode+apply)\treplay/subscription\tplain COPY\treplay/COPY\tworkload's SQL on the target\treplay/SQL\tpeak RSS MiB\t")
	for _, r := range results {
		copyCol, vsCopy := "-", "-"
		if r.copyTook > 0 {
			copyCol = r.copyTook.Round(time.Millisecond).String()
			vsCopy = fmt.Sprintf("%.2f", r.replay.Seconds()/r.copyTook.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%s\t%.2f\t%s\t%s\t%s\t%.2f\t%d\t\n", r.workload, r.replayRows, r.replay.Round(time.Millisecond), float64(r.replayRows)/r.replay.Seconds(),
			r.sub.Round(time.Millisecond), r.replay.Seconds()/r.sub.Seconds(), copyCol, vsCopy, r.direct.Round(time.Millisecond), r.replay.Seconds()/r.direct.Seconds(), r.replayRSS>>20)
	}
	tw.Flush()
	fmt.Println("workload's SQL on the target: the workload's statements run on a copy of its starting rows on the replay's cluster (pgbench with its 4 clients).")

	var rpo []rpoResult
	for _, to := range []string{"local", "S3 (versitygw)"} {
		for _, rate := range []int{200, 1000} {
			rpo = append(rpo, lagUnderLoad(b, src, rate, to == "local"))
		}
	}
	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "commit-to-stored delay (RPO), default settings\tstore\tpgbench rate asked\tdone\tsegments\tp50\tp99\t")
	for _, r := range rpo {
		fmt.Fprintf(tw, "\t%s\t%d/s\t%.0f/s\t%d\t%s\t%s\t\n", r.store, r.rate, r.done, r.n, r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond))
	}
	tw.Flush()
	fmt.Println("Per stored segment, from its oldest commit to its record: the most any transaction in it waited.")

	seg := restoreSegments(b)

	// Every target of issue 14, measured in this run.
	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target (issue 14)\tmeasured\tmet\t")
	row := func(name string, v float64, format string, ok bool) {
		fmt.Fprintf(tw, "%s\t"+format+"\t%v\t\n", name, v, ok)
	}
	for _, r := range results {
		if r.copyTook > 0 {
			row("replay "+r.workload+": time / plain COPY <= 1.20", r.replay.Seconds()/r.copyTook.Seconds(), "%.2f", r.replay.Seconds()/r.copyTook.Seconds() <= 1.2)
		} else if strings.HasPrefix(r.workload, "pgbench") || r.workload == "1M-row UPDATE" {
			v := r.replay.Seconds() / r.sub.Seconds()
			row("replay "+r.workload+": time / subscription <= 0.67 (1.5x its rate)", v, "%.2f", v <= 1/1.5)
		}
	}
	for _, r := range results {
		if r.workload == "200k-row UPDATE, REPLICA IDENTITY FULL" {
			continue // no target; shown above
		}
		v := r.btfu.Seconds() / r.sub.Seconds()
		row("ingest "+r.workload+": time / subscription <= 1.00", v, "%.2f", v <= 1)
		v = r.btfu.Seconds() / r.null.Seconds()
		row("ingest "+r.workload+": time / pg_recvlogical to /dev/null <= 1.10", v, "%.2f", v <= 1.1)
	}
	for _, r := range rpo {
		row(fmt.Sprintf("RPO p99 at %d/s to %s <= 1s (seconds)", r.rate, r.store), r.p99.Seconds(), "%.3f", r.p99 <= time.Second)
	}
	for _, r := range results {
		if strings.HasPrefix(r.workload, "1M-row") {
			row("peak RSS archiving "+r.workload+" <= 256 MiB (MiB)", float64(r.peakRSS>>20), "%.0f", r.peakRSS <= 256<<20)
			row("peak RSS replaying "+r.workload+" <= 256 MiB (MiB)", float64(r.replayRSS>>20), "%.0f", r.replayRSS <= 256<<20)
		}
	}
	row("a day of default segments adds to a restore at 20ms/request <= 5m (minutes)", seg.compactedDay.Minutes(), "%.1f", seg.compactedDay <= 5*time.Minute)
	tw.Flush()
	for _, r := range results {
		fmt.Printf("allocations per change while catching up, %s: %.1f\n", r.workload, float64(r.allocs)/float64(max(r.changes, 1)))
	}
}

func runWorkload(b *testing.B, src, subC *pgtest.Cluster, w workload) result {
	ctx := context.Background()
	db := src.CreateDB(b)
	if strings.HasPrefix(w.name, "pgbench") {
		pgbench(b, src, db, "-i", "-q", "-s", "2")
	} else {
		src.Exec(b, db, w.setup)
	}
	// Same schema and rows on the subscriber: the changes apply to the
	// rows they name, as replay's do (on an empty copy the subscription
	// would skip every UPDATE and DELETE as finding no row).
	subDB := subC.CreateDB(b)
	schema, err := exec.Command(filepath.Join(src.BinDir, "pg_dump"), "--schema-only", "-d", src.DSN(db)).Output()
	if err != nil {
		b.Fatal(err)
	}
	var ddl []string
	for _, line := range strings.Split(string(schema), "\n") {
		if !strings.HasPrefix(line, "\\") { // psql meta-commands (\restrict)
			ddl = append(ddl, line)
		}
	}
	schemaSQL := strings.Join(ddl, "\n")
	dump := filepath.Join(b.TempDir(), "sub.dump")
	if out, err := exec.Command(filepath.Join(src.BinDir, "pg_dump"), "-Fc", "-f", dump, "-d", src.DSN(db)).CombinedOutput(); err != nil {
		b.Fatalf("pg_dump: %v\n%s", err, out)
	}
	if out, err := exec.Command(filepath.Join(subC.BinDir, "pg_restore"), "--no-owner", "-d", subC.DSN(subDB), dump).CombinedOutput(); err != nil {
		b.Fatalf("pg_restore: %v\n%s", err, out)
	}

	// btfu: first base backup (creates the slot), then stop.
	ce := capturetest.Setup(b, src, db, "segment_max_size = \"64MiB\"\nreplica_identity_full = [\"public.pgbench_history\"]")
	s, meta, arts, pub := ce.Source, ce.Meta, ce.Arts, ce.Source.Publication
	srcRec := store.Source{ID: ce.SourceID}
	worker := func() *capture.Worker {
		return &capture.Worker{Source: s, SourceID: srcRec.ID, Meta: meta, Artifacts: arts, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), SpoolDir: b.TempDir(), SequenceInterval: time.Hour}
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- worker().Run(wctx) }()
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		bases, _ := meta.ListBaseBackups(ctx, srcRec.ID)
		if len(bases) > 0 && bases[0].Status == store.BackupComplete {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("no base backup in 5 minutes")
		}
	}
	waitCursor(b, meta, srcRec.ID, src.CurrentLSN(b))
	cancel()
	<-done

	// pg_recvlogical's slot and the subscription's, created now, idle.
	src.Exec(b, db, "SELECT pg_create_logical_replication_slot('recv', 'pgoutput'), pg_create_logical_replication_slot('recvnull', 'pgoutput')")
	subC.Exec(b, subDB, fmt.Sprintf("CREATE SUBSCRIPTION sub CONNECTION '%s' PUBLICATION %s WITH (copy_data = false, enabled = false)", src.DSN(db), pub))

	before := src.CurrentLSN(b)
	w.load(b, src, db)
	end := src.CurrentLSN(b)
	changes := pgtest.QueryValue[int64](b, src, db, fmt.Sprintf("SELECT count(*) FROM pg_logical_slot_peek_binary_changes('recv', '%s', NULL, 'proto_version', '1', 'publication_names', '%s') WHERE substr(data, 1, 1) IN ('I', 'U', 'D')", end, pub))
	_ = before

	// btfu catches up.
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	resetPeakRSS()
	t0 := time.Now()
	wctx, cancel = context.WithCancel(ctx)
	go func() { done <- worker().Run(wctx) }()
	waitCursor(b, meta, srcRec.ID, end)
	btfuTook := time.Since(t0)
	rss := peakRSS()
	runtime.ReadMemStats(&ms1)
	cancel()
	<-done
	if chains, _ := meta.ListChains(ctx, srcRec.ID); len(chains) != 1 {
		b.Fatalf("btfu started a new chain instead of catching up: %+v", chains)
	}

	// btfu's replay of the stored changes into an empty database.
	plan, err := restore.MakePlan(ctx, meta, srcRec.ID, restore.Target{Latest: true})
	if err != nil {
		b.Fatal(err)
	}
	restoreDB := subC.CreateDB(b)
	runtime.GC()
	resetPeakRSS()
	var replayStart, replayEnd time.Time
	sum, err := restore.Run(ctx, meta, arts, srcRec.ID, plan, restore.Options{TargetDSN: subC.DSN(restoreDB), Progress: func(p restore.Progress) {
		switch p.Phase {
		case "replay":
			if replayStart.IsZero() {
				replayStart = time.Now()
			}
		case "sequences":
			replayEnd = time.Now()
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	replayRSS := peakRSS()

	// pg_recvlogical catches up.
	recv, err := pgbin.Find(ctx, "pg_recvlogical", 0)
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "recv.out")
	t0 = time.Now()
	// With the options btfu asks for (protocol 2, large transactions
	// streamed while in progress, logical messages), so the walsender does
	// the same work for every consumer.
	opts := []string{"-o", "proto_version=2", "-o", "streaming=on", "-o", "messages=true", "-o", "publication_names=" + pub}
	cmd := exec.Command(recv.Path, append(append([]string{"-d", src.DSN(db), "--slot", "recv", "--start"}, opts...), "--endpos", end.String(), "-f", out, "--no-loop")...)
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("pg_recvlogical: %v\n%s", err, o)
	}
	recvTook := time.Since(t0)

	// The same to /dev/null: how fast the walsender itself sends, the
	// limit any client reaches.
	t0 = time.Now()
	cmd = exec.Command(recv.Path, append(append([]string{"-d", src.DSN(db), "--slot", "recvnull", "--start"}, opts...), "--endpos", end.String(), "-f", "/dev/null", "--no-loop")...)
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("pg_recvlogical to /dev/null: %v\n%s", err, o)
	}
	nullTook := time.Since(t0)

	// The native subscription catches up.
	t0 = time.Now()
	subC.Exec(b, subDB, "ALTER SUBSCRIPTION sub ENABLE")
	for {
		got := pgtest.QueryValue[string](b, src, db, "SELECT coalesce((SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'sub'), '0/0')")
		lsn, _ := pglogrepl.ParseLSN(got)
		if lsn >= end {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	subTook := time.Since(t0)
	subC.Exec(b, subDB, "ALTER SUBSCRIPTION sub DISABLE; ALTER SUBSCRIPTION sub SET (slot_name = NONE); DROP SUBSCRIPTION sub")
	src.Exec(b, db, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT active")
	var copyTook time.Duration
	if tbl, ok := copyTables[w.name]; ok {
		copyTook = plainCopy(b, src, db, subC, schemaSQL, tbl)
	}
	// The workload's own statements, run on a copy of the rows it
	// started from on the replay's cluster: the work the target must do
	// at least, however the changes reach it.
	directDB := subC.CreateDB(b)
	if out, err := exec.Command(filepath.Join(subC.BinDir, "pg_restore"), "--no-owner", "-d", subC.DSN(directDB), dump).CombinedOutput(); err != nil {
		b.Fatalf("pg_restore: %v\n%s", err, out)
	}
	subC.Exec(b, directDB, "CHECKPOINT")
	t0 = time.Now()
	w.load(b, subC, directDB)
	direct := time.Since(t0)
	return result{workload: w.name, changes: changes, btfu: btfuTook, recv: recvTook, sub: subTook, null: nullTook,
		allocs: ms1.Mallocs - ms0.Mallocs, peakRSS: rss, replayRSS: replayRSS,
		replay: replayEnd.Sub(replayStart), replayRows: sum.Rows, copyTook: copyTook, direct: direct}
}

// plainCopy times COPY … FROM STDIN of table tbl's rows, as the source
// holds them, into an empty table of the same schema on c (text format,
// from memory: the floor replay of inserts is measured against).
func plainCopy(b *testing.B, src *pgtest.Cluster, srcDB string, c *pgtest.Cluster, schemaSQL, tbl string) time.Duration {
	ctx := context.Background()
	var data bytes.Buffer
	from := src.Connect(b, srcDB)
	if _, err := from.PgConn().CopyTo(ctx, &data, "COPY "+tbl+" TO STDOUT"); err != nil {
		b.Fatal(err)
	}
	db := c.CreateDB(b)
	c.Exec(b, db, schemaSQL)
	to := c.Connect(b, db)
	t0 := time.Now()
	if _, err := to.PgConn().CopyFrom(ctx, bytes.NewReader(data.Bytes()), "COPY "+tbl+" FROM STDIN"); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}

func waitCursor(b testing.TB, meta store.Store, sourceID int64, want pglogrepl.LSN) {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		chains, _ := meta.ListChains(context.Background(), sourceID)
		for _, c := range chains {
			if c.EndedAt.IsZero() && c.CursorLSN >= want {
				return
			}
		}
		time.Sleep(5 * time.Millisecond) // a fine grain: small backlogs take 150ms
	}
	b.Fatalf("btfu did not reach %s in 10 minutes", want)
}

type rpoResult struct {
	store    string
	rate     int
	done     float64 // transactions per second pgbench reached
	n        int
	p50, p99 time.Duration
}

// lagUnderLoad runs btfu at its default settings against a steady
// pgbench load of rate transactions per second, storing to a local
// directory or to S3, and measures, per stored segment, the delay from its
// oldest commit to its record.
func lagUnderLoad(b *testing.B, src *pgtest.Cluster, rate int, local bool) rpoResult {
	ctx := context.Background()
	db := src.CreateDB(b)
	pgbench(b, src, db, "-i", "-q", "-s", "10")
	ce := capturetest.Setup(b, src, db, "replica_identity_full = [\"public.pgbench_history\"]")
	res := rpoResult{store: "local", rate: rate}
	if !local {
		res.store = "S3"
		srv, err := s3test.Start()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { srv.Stop() })
		arts, err := s3.New(ctx, s3.Config{Bucket: srv.CreateBucket(b), Prefix: "btfu", Endpoint: srv.Endpoint(), PathStyle: true,
			Region: s3test.Region, AccessKeyID: srv.AccessKey(), SecretAccessKey: srv.SecretKey()})
		if err != nil {
			b.Fatal(err)
		}
		ce.Arts = arts
	}
	s, meta, arts := ce.Source, ce.Meta, ce.Arts
	rec := store.Source{ID: ce.SourceID}
	w := &capture.Worker{Source: s, SourceID: rec.ID, Meta: meta, Artifacts: arts, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), SpoolDir: b.TempDir(), SequenceInterval: time.Hour}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	for deadline := time.Now().Add(2 * time.Minute); w.Status().State != "streaming"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("not streaming in 2 minutes")
		}
	}
	start := time.Now()
	txs0 := pgtest.QueryValue[int64](b, src, db, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
	pgbench(b, src, db, "-n", "-c", "4", "-j", "2", "-R", fmt.Sprint(rate), "-T", "15")
	took := time.Since(start)
	txs1 := pgtest.QueryValue[int64](b, src, db, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
	res.done = float64(txs1-txs0) / took.Seconds()
	time.Sleep(2 * time.Second)
	cancel()
	<-done
	segs, _ := meta.ListSegments(ctx, rec.ID, 0)
	var delays []time.Duration
	for _, sg := range segs {
		if sg.FirstCommitAt.After(start) {
			delays = append(delays, sg.CreatedAt.Sub(sg.FirstCommitAt))
		}
	}
	if len(delays) == 0 {
		b.Fatal("no segments under load")
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	res.n, res.p50, res.p99 = len(delays), delays[len(delays)/2], delays[len(delays)*99/100]
	return res
}
