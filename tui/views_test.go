package tui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/sourcedb"
	"github.com/btfu/btfu/store"
)

// Names at the limit (40 characters) and messages longer than a line.
const (
	longName  = "orders_eu_west_1_primary_cluster_replica"
	longName2 = "billing_ledger_archive_2026_q4_restored"
	longLost  = "error: slot btfu_billing_ledger_archive_2026_q4_restored is lost: the server removed it (max_slot_wal_keep_size exceeded); re-register the source to take a new base backup"
	longEvent = "capture of " + longName2 + " failed: replication slot btfu_billing_ledger_archive_2026_q4_restored has been invalidated because it exceeded the maximum reserved size; re-register the source"
	longFind  = "3 tables have no primary key and no replica identity: public.sessions_archive_2026, public.audit_log_entries, public.tmp_import_rows"
	longFix   = "add them to exclude_tables, give them a primary key, or set tables_without_key = \"replica_identity_full\""
	longCover = "target outside coverage: cannot restore to all transactions committed at or before 2026-11-23T13:59:00Z: the newest restorable instant is 2026-11-23T13:52:59Z; pick an earlier time"
	longDSN   = "postgres://restore_operator@scratch-db-eu-west-1.internal.example.com:5432/orders_eu_west_1_drill_2026_11_23?sslmode=require"
	longSrc   = "postgres://btfu@primary-db-eu-west-1.internal.example.com:5432/orders?sslmode=require"
)

// longSample is sample with long names and long messages everywhere.
func longSample() *fakeEngine {
	f := sample()
	f.st.Sources[0].Name = longName
	f.st.Sources[1].Name = longName2
	f.st.Sources[1].Attention = longLost
	f.cfg = &config.Config{Path: "config.toml", Sources: []config.Source{
		{Name: longName, DSN: longSrc, RestoreTarget: longDSN}, {Name: longName2, DSN: "postgres://btfu@billing-db/billing"}}}
	f.events = []engine.EventRecord{
		{At: at(-time.Minute), Source: longName, Kind: "backup.finished", Message: "base backup of " + longName + " complete: " + longName + "/base/0001.dump at 0/16B0000"},
		{At: at(-30 * time.Second), Source: longName2, Level: 8, Kind: "capture.failed", Message: longEvent},
	}
	f.report = &probe.Report{Target: "primary-db-eu-west-1.internal.example.com:5432/orders", ServerVersion: "15.8", Provider: "self-hosted",
		Checks: []probe.Check{{ID: "wal_level", Status: probe.OK, Finding: "logical"}, {ID: "replica_identity", Status: probe.Warn, Finding: longFind, Fix: longFix}},
		Plan:   sourcedb.Plan{Publication: "btfu_" + longName, PublicationForm: "FOR ALL TABLES", Tables: []string{"public.a"}, Slot: "btfu_" + longName}}
	f.plan.Base.ArtifactKey = longName + "/base/0001.dump"
	f.plan.LateTables = []store.TableCoverage{{Table: "public.sessions_archive_2026", FromLSN: 0x16B1000, AddedAt: at(-45 * time.Minute), LeftOut: true, Reason: "no primary key and no replica identity"}}
	return f
}

// whole reports whether key is in out with nothing cut: wrapped lines
// joined again hold every character of it, in order (a form's focus bar
// is decoration).
func whole(out, key string) bool {
	squash := func(s string) string { return strings.Join(strings.Fields(strings.ReplaceAll(s, "┃", "")), "") }
	return strings.Contains(squash(out), squash(key))
}

// Every screen at 80x24 with long names and long messages: the golden
// view, nothing wider than the terminal, and the line that carries the
// point whole (wrapped, never cut with "…").
func TestViewsAt80x24KeepTheKeyLineWhole(t *testing.T) {
	start := func(t *testing.T) (*fakeEngine, Model) {
		f := longSample()
		m := newModel(f)
		m = run(t, m, m.fetch())
		return f, sized(t, m, 80, 24)
	}
	toPlan := func(t *testing.T, m Model) Model {
		m = hit(t, m, "R")
		m = typeText(t, m, "latest")
		m = hit(t, m, "enter")
		w := m.screen.(*wizard)
		w.form, w.working = nil, checking // the target check needs a database; its result is delivered
		m, cmd := update(t, m, targetCheckedMsg{info: restore.TargetInfo{Database: "orders_eu_west_1_drill_2026_11_23", ServerVersion: "15.8"}})
		return run(t, m, cmd)
	}
	cases := []struct {
		name string
		key  string
		open func(t *testing.T, f *fakeEngine, m Model) Model
	}{
		{"dashboard", longLost, func(t *testing.T, f *fakeEngine, m Model) Model { return m }},
		{"dashboard_notice", "base backup of " + longName + " complete: k at 0/1000", func(t *testing.T, f *fakeEngine, m Model) Model {
			return hit(t, m, "b")
		}},
		{"detail", longFind, func(t *testing.T, f *fakeEngine, m Model) Model { return hit(t, m, "enter") }},
		{"detail_fix", longFix, func(t *testing.T, f *fakeEngine, m Model) Model { return hit(t, m, "enter") }},
		{"timeline", longCover, func(t *testing.T, f *fakeEngine, m Model) Model {
			f.planErr = errors.New(longCover)
			return hit(t, m, "t")
		}},
		{"log", longEvent, func(t *testing.T, f *fakeEngine, m Model) Model { return hit(t, m, "L") }},
		{"register", "cannot parse postgres://u@h:99999999/db", func(t *testing.T, f *fakeEngine, m Model) Model {
			m = hit(t, m, "n")
			m = typeText(t, m, "orders_eu_west_1_primary_cluster_replic2")
			m = hit(t, m, "enter")
			m = typeText(t, m, "postgres://u@h:99999999/db")
			return hit(t, m, "enter")
		}},
		{"register_probed", longFind, func(t *testing.T, f *fakeEngine, m Model) Model {
			m = hit(t, m, "n")
			r := m.screen.(*register)
			r.name, r.dsn, r.form, r.probing = "orders_eu_west_1_primary_cluster_replic2", longSrc, nil, true
			m, _ = update(t, m, registerProbedMsg{block: r.sourceBlock(), r: f.report})
			return m
		}},
		{"wizard_source", longName2, func(t *testing.T, f *fakeEngine, m Model) Model {
			m, cmd := update(t, m, OpenWizardMsg{})
			return run(t, m, cmd)
		}},
		{"wizard_no_source", "no source is configured; register one first (n on the dashboard)", func(t *testing.T, f *fakeEngine, m Model) Model {
			f.cfg.Sources = nil
			m, cmd := update(t, m, OpenWizardMsg{})
			m = run(t, m, cmd)
			if w := m.screen.(*wizard); hit(t, m, "esc").screen != nil {
				t.Errorf("esc does not leave a wizard without sources: step %d", w.step)
			}
			return m
		}},
		{"wizard_point", "a time with its zone (2026-11-23 14:05:00+00), a time ago (5m ago), an LSN (0/3000060), or latest", func(t *testing.T, f *fakeEngine, m Model) Model {
			return hit(t, m, "R")
		}},
		{"wizard_point_refused", longCover, func(t *testing.T, f *fakeEngine, m Model) Model {
			f.planErr = errors.New(longCover)
			m = toPlan(t, m)
			if w := m.screen.(*wizard); w.step != stepPoint {
				t.Fatalf("a refused plan goes back to the point: step %d", w.step)
			}
			return m
		}},
		{"wizard_target", "the target is the source itself (" + longDSN + " is the database of source " + longName + ")", func(t *testing.T, f *fakeEngine, m Model) Model {
			m = hit(t, m, "R")
			m = typeText(t, m, "latest")
			m = hit(t, m, "enter")
			// The source's own database, under another user: refused as typed.
			f.cfg.Sources[0].DSN = "postgres://someone_else@scratch-db-eu-west-1.internal.example.com:5432/orders_eu_west_1_drill_2026_11_23"
			m = hit(t, m, "enter")
			if w := m.screen.(*wizard); w.step != stepTarget || w.form == nil {
				t.Fatalf("the source accepted as the target: step %d", w.step)
			}
			return m
		}},
		{"wizard_target_checked", "the target database orders_eu_west_1_drill_2026_11_23 is not empty (12 tables); restore into an empty database", func(t *testing.T, f *fakeEngine, m Model) Model {
			m = hit(t, m, "R")
			m = typeText(t, m, "latest")
			m = hit(t, m, "enter")
			w := m.screen.(*wizard)
			w.form, w.working = nil, checking
			m, cmd := update(t, m, targetCheckedMsg{err: errors.New("the target database orders_eu_west_1_drill_2026_11_23 is not empty (12 tables); restore into an empty database, or pass --clean to drop what the backup contains first")})
			return run(t, m, cmd)
		}},
		{"wizard_plan", "LEFT OUT public.sessions_archive_2026: not backed up since 0/16B1000 (no primary key and no replica identity)", func(t *testing.T, f *fakeEngine, m Model) Model {
			return toPlan(t, m)
		}},
		{"wizard_plan_target", "into " + redact.DSN(longDSN) + " (orders_eu_west_1_drill_2026_11_23, PostgreSQL 15.8, empty)", func(t *testing.T, f *fakeEngine, m Model) Model {
			return toPlan(t, m)
		}},
		{"wizard_confirm", "or restore --no-owner: objects then belong to the restoring role", func(t *testing.T, f *fakeEngine, m Model) Model {
			m = toPlan(t, m)
			return hit(t, m, "enter")
		}},
		{"wizard_confirm_many_left_out", "Confirm: type restore to go on", func(t *testing.T, f *fakeEngine, m Model) Model {
			for i := range 9 {
				f.plan.LateTables = append(f.plan.LateTables, store.TableCoverage{Table: fmt.Sprintf("public.audit_%d", i), FromLSN: 0x16B1000, AddedAt: at(-45 * time.Minute), LeftOut: true, Reason: "no primary key"})
			}
			m = toPlan(t, m)
			m = hit(t, m, "enter")
			if out := ansi.Strip(m.Render()); !strings.Contains(out, "more table(s); btfu restore --dry-run lists them all") {
				t.Errorf("the tables that do not fit are not counted:\n%s", out)
			}
			return m
		}},
		{"wizard_running", "elapsed 0s; stopping leaves the target partial", func(t *testing.T, f *fakeEngine, m Model) Model {
			m = toPlan(t, m)
			w := m.screen.(*wizard)
			w.step, w.started = stepRunning, time.Now()
			w.last = restore.Progress{Phase: "replay", Bytes: 1 << 20, TotalBytes: 3 << 20, Transactions: 400, Elapsed: 2 * time.Second}
			return m
		}},
		{"wizard_done", "NOT REPRODUCED 0/3000060: DO (ALTER TABLE t SET (fillfactor=70)): not rebuilt", func(t *testing.T, f *fakeEngine, m Model) Model {
			m = toPlan(t, m)
			w := m.screen.(*wizard)
			w.step = stepDone
			w.sum, _ = f.Restore(context.Background(), "", nil, restore.Options{})
			w.sum.Base = f.plan.Base
			w.sum.Notes = []string{"the target's server is PostgreSQL 16.4, newer than the source's 15.8; pg_restore of a 15 dump into 16 is supported"}
			return m
		}},
		{"wizard_done_scrolls", "lines 2-", func(t *testing.T, f *fakeEngine, m Model) Model {
			m = toPlan(t, m)
			w := m.screen.(*wizard)
			w.step = stepDone
			w.sum, _ = f.Restore(context.Background(), "", nil, restore.Options{})
			for i := range 12 {
				w.sum.LeftOut = append(w.sum.LeftOut, fmt.Sprintf("public.audit_%d: no primary key", i))
			}
			m = hit(t, m, "down")
			if w.scroll != 1 {
				t.Errorf("down does not scroll the summary: %d", w.scroll)
			}
			return m
		}},
		{"wizard_failed", "Restore failed: replay 0/16C0040: insert into public.orders_eu_west_1_line_items: duplicate key value violates unique constraint", func(t *testing.T, f *fakeEngine, m Model) Model {
			m = toPlan(t, m)
			w := m.screen.(*wizard)
			w.step, w.err = stepDone, errors.New("replay 0/16C0040: insert into public.orders_eu_west_1_line_items: duplicate key value violates unique constraint \"line_items_pkey\"")
			return m
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, m := start(t)
			m = c.open(t, f, m)
			out := ansi.Strip(m.Render())
			checkFits(t, out, 80, 24)
			golden(t, "long_"+c.name+"_80x24", out)
			if !whole(out, c.key) {
				t.Errorf("the key line is cut:\n%s\nwant whole: %s", out, c.key)
			}
		})
	}
}

func TestWrap(t *testing.T) {
	for _, c := range []struct {
		in            string
		width, indent int
		want          string
	}{
		{"short", 10, 2, "short"},
		{"one two three four", 9, 2, "one two\n  three\n  four"},
		{"label  a value that wraps", 14, 7, "label  a value\n       that\n       wraps"},
		{"averyveryverylongword", 8, 0, "averyver\nyverylon\ngword"},
		{"postgres://user@host:5432/db", 18, 0, "postgres://user@\nhost:5432/db"},
		{"a,b,c,d", 4, 0, "a,b,\nc,d"},
	} {
		got := wrap(c.in, c.width, c.indent)
		if got != c.want {
			t.Errorf("wrap(%q, %d, %d) = %q, want %q", c.in, c.width, c.indent, got, c.want)
		}
		for _, l := range strings.Split(got, "\n") {
			if ansi.StringWidth(l) > c.width {
				t.Errorf("wrap(%q): %q is wider than %d", c.in, l, c.width)
			}
		}
	}
}

// Two long names that share a prefix stay apart in the dashboard's list at
// 80 columns: the cell widens into free columns and cuts the middle.
func TestDashboardKeepsLongNamesApart(t *testing.T) {
	f := sample()
	f.st.Sources[0].Name = "orders_eu_west_1_primary_cluster_alpha"
	f.st.Sources[1].Name = "orders_eu_west_1_primary_cluster_beta"
	m := newModel(f)
	m = run(t, m, m.fetch())
	m = sized(t, m, 80, 24)
	out := ansi.Strip(m.Render())
	checkFits(t, out, 80, 24)
	for _, want := range []string{"_alpha ", "_beta "} {
		if !strings.Contains(out, want) {
			t.Errorf("dashboard lacks %q:\n%s", want, out)
		}
	}
}
