package cli_test

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact/local"
	"github.com/btfu/btfu/store/sqlite"
)

// storedSource writes the metadata and artifacts of source "orders" into
// dir, as a btfu that ran for ten days would have left them: one open
// chain, segments of 100 LSNs from 0/64 to 0/3E8, and base backups at
// LSN 100 (10 days ago), 550 (5 days), 700 (3 days) and 900 (12 hours).
func storedSource(t *testing.T, dir string) (store.Store, map[string]int64) {
	t.Helper()
	ctx := context.Background()
	meta, err := sqlite.Open(ctx, filepath.Join(dir, "btfu.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	arts, err := local.New(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	put := func(key string) {
		_, err := arts.Put(ctx, key, strings.NewReader(key))
		must(err)
	}
	now := time.Now()
	src, err := meta.UpsertSource(ctx, store.Source{Name: "orders", State: "stopped"})
	must(err)
	ch, err := meta.CreateChain(ctx, store.Chain{SourceID: src.ID, SlotName: "btfu_orders", StartLSN: 100, StartedAt: now.Add(-240 * time.Hour), CursorTime: now.Add(-240 * time.Hour)})
	must(err)
	ids := map[string]int64{}
	for _, b := range []struct {
		name string
		lsn  pglogrepl.LSN
		ago  time.Duration
	}{{"b10d", 100, 240 * time.Hour}, {"b5d", 550, 120 * time.Hour}, {"b3d", 700, 72 * time.Hour}, {"b12h", 900, 12 * time.Hour}} {
		key := "orders/base/" + b.name + ".dump"
		put(key)
		at := now.Add(-b.ago)
		r, err := meta.CreateBaseBackup(ctx, store.BaseBackup{SourceID: src.ID, ChainID: ch.ID, ConsistentLSN: b.lsn, SnapshotTime: at,
			StartedAt: at, FinishedAt: at.Add(time.Minute), Status: store.BackupComplete, ArtifactKey: key, SizeBytes: 1 << 20})
		must(err)
		ids[b.name] = r.ID
	}
	for end := pglogrepl.LSN(200); end <= 1000; end += 100 {
		key := fmt.Sprintf("orders/segments/%d.ndjson.zst", end)
		put(key)
		at := now.Add(-time.Duration(1000-end) * 20 * time.Minute)
		_, err := meta.AddSegment(ctx, store.Segment{SourceID: src.ID, ChainID: ch.ID, FormatVersion: 1, ArtifactKey: key,
			PrevEndLSN: end - 100, FirstCommitLSN: end - 99, LastCommitLSN: end - 1, EndLSN: end, FirstCommitAt: at, LastCommitAt: at,
			TxCount: 1, ChangeCount: 1, RawBytes: 2048, StoredBytes: 1024})
		must(err)
	}
	must(meta.AdvanceChain(ctx, ch.ID, 1000, now.Add(-time.Minute)))
	return meta, ids
}

func TestRetentionDryRunShowsWhatWouldGoAndWhy(t *testing.T) {
	dir := writeConfig(t, `
[[source]]
name = "orders"
dsn = "postgres://btfu@127.0.0.1:1/orders"
keep_base_backups = 1
keep_for = "1d"
keep_daily = 3
timezone = "Europe/Paris"
`)
	meta, ids := storedSource(t, dir)
	r := btfu(t, dir, "retention", "--dry-run")
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.all())
	}
	out := r.stdout
	t.Log(out)
	for _, want := range []string{
		"keep_base_backups = 1, keep_for = 1d, keep_daily = 3, keep_weekly = 0, keep_monthly = 0, timezone = Europe/Paris",
		fmt.Sprintf(`DELETE  %d `, ids["b10d"]),
		"no rule keeps it",
		fmt.Sprintf(`keep    %d `, ids["b12h"]),
		"keep_base_backups: among the 1 newest; keep_for: taken within the last 1d",
		"keep_for: the newest base before the window's start",
		"keep_daily: the newest of ",
		"(restore point: its snapshot time only)",
		// 100..500 go, 500..600 holds b5d's consistent point, 600..700
		// go, 700..1000 follow b3d.
		"DELETE  1      0/64..0/1F4",
		"ends at or before the oldest base of its chain kept for point-in-time recovery",
		"keep    1      0/1F4..0/258",
		"holds the consistent point of base backup",
		"DELETE  1      0/258..0/2BC",
		"keep    1      0/2BC..0/3E8",
		"after a base kept for point-in-time recovery",
		"would delete 1 base backup(s) and 5 segment(s), 1.0 MiB",
		"dry run: nothing deleted",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q", want)
		}
	}
	if !regexp.MustCompile(`keep\s+` + fmt.Sprint(ids["b5d"]) + `\s.*keep_daily`).MatchString(out) {
		t.Errorf("b5d is not kept by keep_daily")
	}
	ctx := context.Background()
	bases, err := meta.ListBaseBackups(ctx, 1)
	if err != nil || len(bases) != 4 {
		t.Fatalf("a dry run deleted base backups: %d left (%v)", len(bases), err)
	}
	segs, err := meta.ListSegments(ctx, 1, 0)
	if err != nil || len(segs) != 9 {
		t.Fatalf("a dry run deleted segments: %d left (%v)", len(segs), err)
	}

	// Without --dry-run, and no btfu running, it applies the same plan.
	r = btfu(t, dir, "retention")
	if r.code != 0 || !strings.Contains(r.stdout, "deleted 1 base backup(s), 5 segment(s)") {
		t.Fatalf("exit %d:\n%s", r.code, r.all())
	}
	bases, _ = meta.ListBaseBackups(ctx, 1)
	segs, _ = meta.ListSegments(ctx, 1, 0)
	if len(bases) != 3 || len(segs) != 4 {
		t.Errorf("%d base backups and %d segments left, want 3 and 4", len(bases), len(segs))
	}
}
