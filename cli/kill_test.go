package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/pgbin"
	"github.com/btfu/btfu/segment"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact/local"
	"github.com/btfu/btfu/store/sqlite"
)

// btfu killed with SIGKILL at random moments during a write workload and
// restarted each time: the base backup plus the segments hold every
// committed transaction exactly once (DESIGN 3).
func TestKillNineAtRandomMomentsLosesNothing(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, "CREATE TABLE log(id bigserial PRIMARY KEY, v text); CREATE TABLE acct(id int PRIMARY KEY, bal bigint); INSERT INTO acct SELECT g, 0 FROM generate_series(1, 100) g")
	dir := writeConfig(t, fmt.Sprintf("[[source]]\nname = \"shop\"\ndsn = %q\nslot = \"s_%s\"\nsegment_max_age = \"200ms\"\n", source.DSN(db), db))
	t.Cleanup(func() {
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 's_%s' AND NOT active", db))
	})

	// Workload: two writers, each transaction a log insert plus an update.
	var committed atomic.Int64
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(context.Background(), source.DSN(db))
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close(context.Background())
			for i := 0; ; i++ {
				select {
				case <-quit:
					return
				default:
				}
				_, err := conn.Exec(context.Background(), fmt.Sprintf("BEGIN; INSERT INTO log(v) VALUES ('w'); UPDATE acct SET bal = bal + 1 WHERE id = %d; COMMIT", i%100+1))
				if err != nil {
					t.Error(err)
					return
				}
				committed.Add(1)
			}
		}()
	}

	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	start := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(bin, "--no-tui")
		cmd.Dir = dir
		var logs bytes.Buffer
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &logs
	}
	for round := 0; round < 5; round++ {
		cmd, _ := start()
		time.Sleep(time.Duration(500+rng.Intn(2500)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	close(quit)
	wg.Wait()
	if committed.Load() == 0 {
		t.Fatal("workload committed nothing")
	}
	// A last clean run catches up and stops on SIGTERM.
	cmd, logs := start()
	want := source.CurrentLSN(t)
	metaPath := filepath.Join(dir, "btfu.db")
	deadline := time.Now().Add(90 * time.Second)
	for {
		if cursorOf(t, metaPath) >= uint64(want) {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("did not catch up to %s:\n%s", want, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("clean stop: %v\n%s", err, logs.String())
	}

	// Compare: rows in the source = rows in the first base backup of the
	// open chain + inserts stored in its segments, each exactly once.
	ctx := context.Background()
	meta, err := sqlite.Open(ctx, metaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	arts, err := local.New(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := meta.GetSource(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	chains, _ := meta.ListChains(ctx, src.ID)
	var chain store.Chain
	for _, c := range chains {
		if c.EndedAt.IsZero() {
			chain = c
		}
	}
	bases, _ := meta.ListBaseBackups(ctx, src.ID)
	var baseKey string
	for _, b := range bases {
		if b.ChainID == chain.ID && b.Status == store.BackupComplete {
			baseKey = b.ArtifactKey
			break
		}
	}
	if baseKey == "" {
		t.Fatalf("no complete base backup in the open chain; chains %+v bases %+v", chains, bases)
	}
	target := source.CreateDB(t)
	rc, err := arts.Get(ctx, baseKey)
	if err != nil {
		t.Fatal(err)
	}
	prog, _ := pgbin.Find(ctx, "pg_restore", 0)
	restore := exec.Command(prog.Path, "--no-owner", "-d", source.DSN(target))
	restore.Stdin = rc
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v\n%s", err, out)
	}
	rc.Close()
	got := queryIDs(t, target, "SELECT id FROM log")
	inDump := len(got)
	segs, _ := meta.ListSegments(ctx, src.ID, 0)
	seen := map[string]bool{}
	for _, s := range segs {
		if s.ChainID != chain.ID {
			continue
		}
		rc, err := arts.Get(ctx, s.ArtifactKey)
		if err != nil {
			t.Fatal(err)
		}
		r, err := segment.NewReader(rc)
		if err != nil {
			t.Fatal(err)
		}
		var commit segment.LSN
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if rec.T == segment.TypeBegin {
				commit = rec.LSN()
			}
			if rec.T == segment.TypeInsert && r.Relation(rec.RelOID).Name == "log" {
				k := fmt.Sprintf("%s/%d", commit, rec.Ordinal)
				if seen[k] {
					t.Fatalf("change %s stored twice", k)
				}
				seen[k] = true
				id, _ := strconv.ParseInt(rec.New[0].Text, 10, 64)
				got = append(got, id)
			}
		}
		r.Close()
		rc.Close()
	}
	want2 := queryIDs(t, db, "SELECT id FROM log")
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	if len(got) != len(want2) {
		t.Fatalf("source has %d rows; base backup %d + segments %d = %d", len(want2), inDump, len(got)-inDump, len(got))
	}
	for i := range want2 {
		if got[i] != want2[i] {
			t.Fatalf("row %d: source %d, stored %d", i, want2[i], got[i])
		}
	}
	t.Logf("%d transactions committed; %d rows in the base backup, %d in %d segments", committed.Load(), inDump, len(got)-inDump, len(segs))
}

func cursorOf(t *testing.T, metaPath string) uint64 {
	t.Helper()
	ctx := context.Background()
	meta, err := sqlite.Open(ctx, metaPath)
	if err != nil {
		return 0
	}
	defer meta.Close()
	src, err := meta.GetSource(ctx, "shop")
	if err != nil {
		return 0
	}
	// A new chain starts at its slot's consistent point, before its first
	// base backup is stored: only a chain with a complete base counts.
	chains, _ := meta.ListChains(ctx, src.ID)
	bases, _ := meta.ListBaseBackups(ctx, src.ID)
	for _, c := range chains {
		if !c.EndedAt.IsZero() {
			continue
		}
		for _, b := range bases {
			if b.ChainID == c.ID && b.Status == store.BackupComplete {
				return uint64(c.CursorLSN)
			}
		}
	}
	return 0
}

func queryIDs(t *testing.T, db, q string) []int64 {
	t.Helper()
	conn := source.Connect(t, db)
	rows, err := conn.Query(context.Background(), q+" ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return out
}
