// Package capturetest sets up a registered source for tests and
// benchmarks: a config.Source for a database of a pgtest cluster,
// registered (publication created), with a SQLite metadata store and a
// local artifact store in temporary directories.
package capturetest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/btfu/btfu/capture"
	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/sourcedb"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/local"
	"github.com/btfu/btfu/store/sqlite"
)

// Env is a registered source and its stores.
type Env struct {
	Source   *config.Source
	SourceID int64
	Meta     store.Store
	MetaPath string // the SQLite file Meta is
	Arts     artifact.Store
}

// Setup registers database db of c as source "app" with a slot named after
// the database; extra is appended to its [[source]] table. Slots left
// inactive are dropped at the end.
func Setup(t testing.TB, c *pgtest.Cluster, db, extra string) *Env {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Parse("test.toml", []byte(fmt.Sprintf("[[source]]\nname = \"app\"\ndsn = %q\nslot = \"s_%s\"\n%s\n", c.DSN(db), db, extra)))
	if err != nil {
		t.Fatal(err)
	}
	src := &cfg.Sources[0]
	rep, err := probe.Run(ctx, src, probe.Options{WALSample: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Registrable(src.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := sourcedb.Register(ctx, src, &rep.Plan, rep.Tables); err != nil {
		t.Fatal(err)
	}
	metaPath := filepath.Join(t.TempDir(), "btfu.db")
	meta, err := sqlite.Open(ctx, metaPath)
	if err != nil {
		t.Fatal(err)
	}
	arts, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rec, err := meta.UpsertSource(ctx, store.Source{Name: "app", SlotName: src.Slot, PublicationName: src.Publication})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		meta.Close()
		c.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 's_%s%%' AND NOT active", db))
	})
	return &Env{Source: src, SourceID: rec.ID, Meta: meta, MetaPath: metaPath, Arts: arts}
}

// Worker returns a capture worker for the source with quiet logs and
// short intervals suited to tests.
func (e *Env) Worker(t testing.TB) *capture.Worker {
	return &capture.Worker{Source: e.Source, SourceID: e.SourceID, Meta: e.Meta, Artifacts: e.Arts,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), SpoolDir: t.TempDir(),
		StatusInterval: 100 * time.Millisecond, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, SequenceInterval: 200 * time.Millisecond}
}
