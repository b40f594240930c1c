package tui

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/sourcedb"
	"github.com/btfu/btfu/store"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden views in testdata/")

// clock is the fixed "now" of view tests.
var clock = time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return clock.Add(d) }
func p64(v int64) *int64           { return &v }
func pf(v float64) *float64        { return &v }

// fakeEngine implements the TUI's Engine for view and Update tests; the
// real engine is exercised by the tmux test against real databases.
type fakeEngine struct {
	st      engine.Status
	err     error
	cov     coverage.Source
	calls   []string
	plan    *restore.Plan
	planErr error
	// restoreOpts: the options of each Restore call.
	restoreOpts []restore.Options
	// planned: the target of each PlanRestore call.
	planned []restore.Target
	// cfg, report and events replace the defaults when set.
	cfg    *config.Config
	report *probe.Report
	events []engine.EventRecord
}

func (f *fakeEngine) Status(context.Context) (engine.Status, error) { return f.st, f.err }
func (f *fakeEngine) Subscribe(ctx context.Context) <-chan engine.EventRecord {
	ch := make(chan engine.EventRecord)
	close(ch)
	return ch
}
func (f *fakeEngine) RecentEvents() []engine.EventRecord {
	if f.events != nil {
		return f.events
	}
	return []engine.EventRecord{{At: at(-time.Minute), Source: "orders", Kind: "backup.finished", Message: "base backup of orders complete"}}
}
func (f *fakeEngine) BackupNow(_ context.Context, name string) (store.BaseBackup, error) {
	f.calls = append(f.calls, "backup "+name)
	return store.BaseBackup{ArtifactKey: "k", ConsistentLSN: 0x1000}, nil
}
func (f *fakeEngine) Pause(_ context.Context, name string) error {
	f.calls = append(f.calls, "pause "+name)
	return nil
}
func (f *fakeEngine) Resume(_ context.Context, name string) error {
	f.calls = append(f.calls, "resume "+name)
	return nil
}
func (f *fakeEngine) Probe(context.Context, string) (*probe.Report, error) {
	if f.report != nil {
		return f.report, nil
	}
	return &probe.Report{Target: "db:5432/orders", ServerVersion: "15.8", Provider: "self-hosted",
		Checks: []probe.Check{{ID: "wal_level", Status: probe.OK, Finding: "logical"}, {ID: "replica_identity", Status: probe.Warn, Finding: "1 table without a key", Fix: "add it to exclude_tables"}},
		Plan:   sourcedb.Plan{Publication: "btfu_orders", PublicationForm: "FOR ALL TABLES", Tables: []string{"public.a"}, Slot: "btfu_orders"}}, nil
}
func (f *fakeEngine) Coverage(context.Context, string) (coverage.Source, error) { return f.cov, nil }
func (f *fakeEngine) SourceRecord(context.Context, string) (store.Source, error) {
	return store.Source{Name: "orders"}, nil
}
func (f *fakeEngine) PlanRestore(_ context.Context, _ string, t restore.Target) (*restore.Plan, error) {
	f.planned = append(f.planned, t)
	return f.plan, f.planErr
}
func (f *fakeEngine) Restore(_ context.Context, _ string, _ *restore.Plan, opts restore.Options) (restore.Summary, error) {
	f.restoreOpts = append(f.restoreOpts, opts)
	return restore.Summary{Transactions: 10, Rows: 20, LargeObjects: 2, TempDDL: 3, OwnerChanges: 1,
		SkippedDDL: []restore.SkippedDDL{{LSN: 0x3000060, Statement: "DO (ALTER TABLE t SET (fillfactor=70))", Err: "not rebuilt", NotReproduced: true}}}, nil
}
func (f *fakeEngine) Config() *config.Config {
	if f.cfg != nil {
		return f.cfg
	}
	return &config.Config{Path: "config.toml", Sources: []config.Source{{Name: "orders", RestoreTarget: "postgres://drill@scratch/orders_drill"}, {Name: "billing"}}}
}
func (f *fakeEngine) Reload(context.Context, *config.Config) error { return nil }

func sample() *fakeEngine {
	base := store.BaseBackup{ID: 1, ArtifactKey: "orders/base/0001.dump", Status: store.BackupComplete, ConsistentLSN: 0x16B0000, SnapshotTime: at(-50 * time.Minute), SizeBytes: 5 << 20}
	next := at(13 * time.Hour)
	return &fakeEngine{
		st: engine.Status{Sources: []engine.SourceStatus{
			{Name: "orders", State: "streaming", FlushedLSN: "0/16B3748", BaseBackups: 2, Segments: 31, LagBytes: p64(12345), RPOSeconds: pf(1.2), TxPerSec: 42, BytesPerSec: 3 << 20,
				LagHistory: []int64{0, 10, 200, 4000, 300, 20, 0, 0}, RetainedBytes: p64(40 << 20), WALBudget: 1 << 30, NextBackup: &next,
				LastBackup:  &engine.BackupInfo{At: at(-50 * time.Minute)},
				Coverage:    []engine.CoverageRange{{FromTime: at(-50 * time.Minute), ToTime: at(0)}},
				LastRestore: &engine.RestoreRecord{StartedAt: at(-2 * time.Hour), Status: "ok"}},
			{Name: "billing", State: "error", FlushedLSN: "0/0", LastError: "slot btfu_billing is lost", Attention: "error: slot btfu_billing is lost"},
		}},
		cov: coverage.Source{Bases: []store.BaseBackup{base}, Ranges: []coverage.Range{
			{FromTime: at(-50 * time.Minute), ToTime: at(-30 * time.Minute), FromLSN: 0x16B0000, ToLSN: 0x16C0000},
			{FromTime: at(-20 * time.Minute), ToTime: at(0), FromLSN: 0x16D0000, ToLSN: 0x16F0000}}},
		plan: &restore.Plan{Target: restore.Target{Time: at(-10 * time.Minute)}, Base: base, SegmentBytes: 3 << 20, Transactions: 1234,
			Segments: []store.Segment{{ArtifactKey: "s1"}, {ArtifactKey: "s2"}}},
	}
}

func newModel(f *fakeEngine) Model {
	m := New(context.Background(), f)
	m.now = func() time.Time { return clock }
	return m
}

func update(t *testing.T, m Model, msgs ...tea.Msg) (Model, tea.Cmd) {
	t.Helper()
	var cmd tea.Cmd
	for _, msg := range msgs {
		var next tea.Model
		next, cmd = m.Update(msg)
		m = next.(Model)
	}
	return m, cmd
}

// run executes cmd and feeds its message (and those of batches and
// sequences) back, as the program would. A command that does not answer
// at once is a timer (a tick, a cursor blink) and is dropped.
func run(t *testing.T, m Model, cmd tea.Cmd) Model {
	t.Helper()
	for i := 0; cmd != nil && i < 50; i++ {
		msg, ok := answer(cmd)
		cmd = nil
		if !ok {
			break
		}
		if cmds, ok := cmdList(msg); ok {
			for _, c := range cmds {
				if c != nil {
					m = run(t, m, c)
				}
			}
			continue
		}
		switch msg.(type) {
		case nil, tickMsg, tea.QuitMsg:
		default:
			if strings.Contains(strings.ToLower(typeName(msg)), "blink") {
				continue
			}
			m, cmd = update(t, m, msg)
		}
	}
	return m
}

// answer runs cmd, waiting a moment for it.
func answer(cmd tea.Cmd) (tea.Msg, bool) {
	ch := make(chan tea.Msg, 1)
	go func() { ch <- cmd() }()
	select {
	case msg := <-ch:
		return msg, true
	case <-time.After(200 * time.Millisecond):
		return nil, false
	}
}

// cmdList opens a tea.Batch or tea.Sequence message.
func cmdList(msg tea.Msg) ([]tea.Cmd, bool) {
	if b, ok := msg.(tea.BatchMsg); ok {
		return b, true
	}
	v := reflect.ValueOf(msg)
	if !v.IsValid() || v.Kind() != reflect.Slice || v.Type().Elem() != reflect.TypeFor[tea.Cmd]() {
		return nil, false
	}
	out := make([]tea.Cmd, v.Len())
	for i := range out {
		out[i] = v.Index(i).Interface().(tea.Cmd)
	}
	return out, true
}

func typeName(v any) string {
	return strings.TrimPrefix(strings.TrimPrefix(fmtType(v), "*"), "textinput.")
}

func press(s string) tea.KeyPressMsg {
	switch s {
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "esc":
		return tea.KeyPressMsg{Code: tea.KeyEscape}
	case "down":
		return tea.KeyPressMsg{Code: tea.KeyDown}
	case "left":
		return tea.KeyPressMsg{Code: tea.KeyLeft}
	case "right":
		return tea.KeyPressMsg{Code: tea.KeyRight}
	case "ctrl+c":
		return tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl}
	case "ctrl+u":
		return tea.KeyPressMsg{Code: 'u', Mod: tea.ModCtrl}
	case "tab":
		return tea.KeyPressMsg{Code: tea.KeyTab}
	}
	r := []rune(s)[0]
	return tea.KeyPressMsg{Code: r, Text: s}
}

// hit presses k and runs what it starts (a form's next field, submit).
func hit(t *testing.T, m Model, k string) Model {
	t.Helper()
	m, cmd := update(t, m, press(k))
	return run(t, m, cmd)
}

func typeText(t *testing.T, m Model, s string) Model {
	for _, r := range s {
		m, _ = update(t, m, tea.KeyPressMsg{Code: r, Text: string(r)}) // cursor blinks only
	}
	return m
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *updateGolden {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./tui -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from %s:\n%s", name, path, got)
	}
}

func sized(t *testing.T, m Model, w, h int) Model {
	m, _ = update(t, m, tea.WindowSizeMsg{Width: w, Height: h})
	return m
}

func checkFits(t *testing.T, out string, w, h int) {
	t.Helper()
	lines := strings.Split(out, "\n")
	if len(lines) > h {
		t.Errorf("%d lines at height %d", len(lines), h)
	}
	for i, l := range lines {
		if n := ansi.StringWidth(l); n > w {
			t.Errorf("line %d is %d wide at %d columns: %q", i, n, w, l)
		}
	}
}

func TestDashboardGolden(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {120, 40}} {
		m := newModel(sample())
		m = run(t, m, m.fetch())
		m = sized(t, m, size[0], size[1])
		out := ansi.Strip(m.Render())
		checkFits(t, out, size[0], size[1])
		golden(t, fmtSize("dashboard", size), out)
		for _, want := range []string{"orders", "streaming", "12.1 KiB", "! error: slot btfu_billing is lost", "base 50m ago", "▁"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: dashboard lacks %q", size, want)
			}
		}
	}
}

func TestStatusErrorAndConfigBanner(t *testing.T) {
	f := sample()
	f.err = errors.New("database is locked")
	m := newModel(f)
	m = run(t, m, m.fetch())
	m, _ = update(t, m, eventMsg{Kind: "config.invalid", Message: "source.x.schedule: 'every 5m' is not a cron expression; still running with the previous configuration"})
	out := ansi.Strip(m.Render())
	for _, want := range []string{"status unavailable: database is locked", "! config.toml: source.x.schedule"} {
		if !strings.Contains(out, want) {
			t.Errorf("view lacks %q:\n%s", want, out)
		}
	}
	m, _ = update(t, m, eventMsg{Kind: "config.reloaded"})
	if strings.Contains(ansi.Strip(m.Render()), "config.toml:") {
		t.Error("the banner stays after a good reload")
	}
}

func TestDashboardKeys(t *testing.T) {
	f := sample()
	m := newModel(f)
	m = run(t, m, m.fetch())
	m, _ = update(t, m, press("down"))
	if m.dash.sel != 1 {
		t.Fatalf("down: %d", m.dash.sel)
	}
	m, _ = update(t, m, press("j"))
	if m.dash.sel != 1 {
		t.Fatalf("down past the end: %d", m.dash.sel)
	}
	m, _ = update(t, m, press("k"))
	m, cmd := update(t, m, press("b"))
	m = run(t, m, cmd)
	if len(f.calls) != 1 || f.calls[0] != "backup orders" || !strings.Contains(ansi.Strip(m.Render()), "base backup of orders complete") {
		t.Fatalf("b: %v\n%s", f.calls, ansi.Strip(m.Render()))
	}
	_, cmd = update(t, m, press("p"))
	run(t, m, cmd)
	if f.calls[1] != "pause orders" {
		t.Fatalf("p: %v", f.calls)
	}
	m, _ = update(t, m, press("?"))
	if !m.full || !strings.Contains(ansi.Strip(m.Render()), "register a source") {
		t.Fatalf("? shows every key:\n%s", ansi.Strip(m.Render()))
	}
	_, cmd = update(t, m, press("q"))
	if _, ok := cmd().(tea.QuitMsg); !ok {
		t.Fatal("q did not quit")
	}
	_, cmd = update(t, m, tickMsg(clock))
	if cmd == nil {
		t.Fatal("tick must re-arm and fetch")
	}
}

// The dashboard gets every status, also while another screen has the
// focus: a source that went meanwhile does not stay selected.
func TestDashboardSelectionFollowsStatusBehindAScreen(t *testing.T) {
	f := sample()
	m := newModel(f)
	m = run(t, m, m.fetch())
	m, _ = update(t, m, press("down"))
	m = hit(t, m, "L")
	f.st.Sources = f.st.Sources[:1]
	m, _ = update(t, m, statusMsg{st: f.st})
	if m.screen == nil || m.dash.sel != 0 {
		t.Fatalf("a status behind the log: screen %T, selection %d", m.screen, m.dash.sel)
	}
	m = hit(t, m, "esc")
	m = hit(t, m, "b")
	if len(f.calls) != 1 || f.calls[0] != "backup orders" {
		t.Fatalf("b after the selected source went: %v", f.calls)
	}
}

func TestDetailProbesAndActs(t *testing.T) {
	f := sample()
	m := newModel(f)
	m = run(t, m, m.fetch())
	m = sized(t, m, 100, 30)
	m, cmd := update(t, m, press("enter"))
	if !strings.Contains(ansi.Strip(m.Render()), "probing") {
		t.Fatal("detail does not say it probes")
	}
	m = run(t, m, cmd)
	out := ansi.Strip(m.Render())
	for _, want := range []string{"Source orders", "wal_level", "fix: add it to exclude_tables", "publication btfu_orders FOR ALL TABLES"} {
		if !strings.Contains(out, want) {
			t.Errorf("detail lacks %q:\n%s", want, out)
		}
	}
	m, cmd = update(t, m, press("b"))
	m = run(t, m, cmd)
	if f.calls[0] != "backup orders" {
		t.Fatalf("b in detail: %v", f.calls)
	}
	m, cmd = update(t, m, press("esc"))
	m = run(t, m, cmd)
	if m.screen != nil {
		t.Fatal("esc did not return to the dashboard")
	}
}

func TestLogFilters(t *testing.T) {
	m := newModel(sample())
	m = run(t, m, m.fetch())
	m, _ = update(t, m, press("L"), eventMsg{At: clock, Source: "billing", Level: 8, Kind: "capture.failed", Message: "slot lost"})
	out := ansi.Strip(m.Render())
	if !strings.Contains(out, "base backup of orders complete") || !strings.Contains(out, "slot lost") {
		t.Fatalf("log:\n%s", out)
	}
	m, _ = update(t, m, press("l"), press("l"), press("l")) // minimum level error
	out = ansi.Strip(m.Render())
	if strings.Contains(out, "base backup of orders complete") || !strings.Contains(out, "slot lost") {
		t.Fatalf("log filtered by level:\n%s", out)
	}
	m, _ = update(t, m, press("s")) // first source seen: orders
	if out := ansi.Strip(m.Render()); strings.Contains(out, "slot lost") || !strings.Contains(out, "source orders") {
		t.Fatalf("log filtered by source:\n%s", out)
	}
}

func TestTimelineGoldenAndCursor(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {120, 40}} {
		f := sample()
		m := newModel(f)
		m = run(t, m, m.fetch())
		m = sized(t, m, size[0], size[1])
		m, cmd := update(t, m, press("t"))
		m = run(t, m, cmd)
		out := ansi.Strip(m.Render())
		checkFits(t, out, size[0], size[1])
		golden(t, fmtSize("timeline", size), out)
		for _, want := range []string{"Coverage of orders", "▼", "█", "░", "a restore here uses base orders/base/0001.dump"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: timeline lacks %q", size, want)
			}
		}
	}
	f := sample()
	f.planErr = errors.New("target outside coverage: restorable 13:10 .. 13:30")
	m := newModel(f)
	m = run(t, m, m.fetch())
	m, cmd := update(t, m, press("t"))
	m = run(t, m, cmd)
	tl := m.screen.(*timeline)
	before := tl.cursor
	m, cmd = update(t, m, press("left"))
	m = run(t, m, cmd)
	if !tl.cursor.Before(before) || !strings.Contains(ansi.Strip(m.Render()), "outside coverage") {
		t.Fatalf("left moves the cursor and shows the plan's refusal:\n%s", ansi.Strip(m.Render()))
	}
	m, _ = update(t, m, press("-"))
	if tl.zoom != 1 {
		t.Fatalf("zoom out: %d", tl.zoom)
	}
	m, cmd = update(t, m, press("enter"))
	m = run(t, m, cmd)
	w, ok := m.screen.(*wizard)
	if !ok || w.step != stepPoint || !strings.Contains(w.point, tl.cursor.UTC().Format("2006-01-02 15:04")) {
		t.Fatalf("enter on the timeline opens the wizard at the cursor: %T", m.screen)
	}
}

// The timeline opens on the newest instant a restore reaches (the end of
// the latest range), not on "now", which is past the last stored commit.
func TestTimelineOpensOnNewestRestorableInstant(t *testing.T) {
	f := sample()
	last := at(-7*time.Minute - 500*time.Millisecond)
	f.cov.Ranges[1].ToTime = last
	m := newModel(f)
	m = run(t, m, m.fetch())
	m = sized(t, m, 80, 24)
	m = hit(t, m, "t")
	tl := m.screen.(*timeline)
	if !tl.cursor.Equal(last) {
		t.Fatalf("cursor at %v, want the end of coverage %v", tl.cursor, last)
	}
	if len(f.planned) != 1 || !f.planned[0].Time.Equal(last) {
		t.Fatalf("the plan shown is not the one at the cursor: %+v", f.planned)
	}
	if out := ansi.Strip(m.Render()); !strings.Contains(out, "cursor 2026-11-23 13:52:59Z") || !strings.Contains(out, "a restore here uses base") {
		t.Fatalf("timeline:\n%s", out)
	}
	// The wizard opened there restores to that very instant.
	m = hit(t, m, "enter")
	m = hit(t, m, "enter")
	if w := m.screen.(*wizard); w.step != stepTarget || !w.target.Time.Equal(last) {
		t.Fatalf("the wizard from the timeline targets %v (step %d), want %v", w.target, w.step, last)
	}
}

func TestWizardWalksToASummary(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {120, 40}} {
		f := sample()
		m := newModel(f)
		m = run(t, m, m.fetch())
		m = sized(t, m, size[0], size[1])
		m = hit(t, m, "R")
		w := m.screen.(*wizard)
		if w.step != stepPoint || w.source != "orders" {
			t.Fatalf("R opens the wizard on the selected source: step %d %q", w.step, w.source)
		}
		// A time without a zone is explained inline.
		m = typeText(t, m, "2026-11-23 13:50:00")
		m = hit(t, m, "enter")
		if out := ansi.Strip(m.Render()); w.step != stepPoint || !strings.Contains(out, "has no time zone") {
			t.Fatalf("no inline explanation:\n%s", out)
		}
		m = typeText(t, m, "+00")
		m = hit(t, m, "enter")
		if w.step != stepTarget {
			t.Fatalf("step %d after a good time: %s", w.step, ansi.Strip(m.Render()))
		}
		if w.dsn != "postgres://drill@scratch/orders_drill" || !strings.Contains(ansi.Strip(m.Render()), "postgres://drill@scratch/orders_drill") {
			t.Fatalf("the target step offers %q, want the source's restore_target", w.dsn)
		}
		// A relative time is read against the clock when entered.
		m = hit(t, m, "esc")
		if w.step != stepPoint {
			t.Fatalf("esc on the target step goes back to the point: step %d", w.step)
		}
		m = hit(t, m, "ctrl+u")
		m = typeText(t, m, "2 minutes ago")
		m = hit(t, m, "enter")
		if d := time.Since(w.target.Time) - 2*time.Minute; w.step != stepTarget || d < 0 || d > 10*time.Second {
			t.Fatalf("\"2 minutes ago\": step %d, target %v (%s): %s", w.step, w.target, d, ansi.Strip(m.Render()))
		}
		w.target = restore.Target{Time: time.Date(2026, 11, 23, 13, 50, 0, 0, time.UTC)}
		// The target check itself needs a database (the tmux test does
		// it): submitting starts it, and its result is delivered here.
		m, cmd := update(t, m, press("enter"))
		m, _ = runHolding(t, m, cmd, func(msg tea.Msg) bool { _, ok := msg.(targetCheckedMsg); return ok })
		if w.form != nil || !strings.Contains(ansi.Strip(m.Render()), "checking the target") {
			t.Fatalf("submitting the target does not check it:\n%s", ansi.Strip(m.Render()))
		}
		m, cmd = update(t, m, targetCheckedMsg{info: restore.TargetInfo{Database: "shop_restore", ServerVersion: "15.8"}})
		m = run(t, m, cmd)
		if w.step != stepPlan {
			t.Fatalf("step %d after the plan: %s", w.step, w.problem)
		}
		out := ansi.Strip(m.Render())
		checkFits(t, out, size[0], size[1])
		golden(t, fmtSize("wizard_plan", size), out)
		m = hit(t, m, "enter")
		m = typeText(t, m, "restor")
		m = hit(t, m, "enter")
		if w.step != stepConfirm || !strings.Contains(ansi.Strip(m.Render()), "type the word restore") {
			t.Fatal("a wrong confirmation is not refused")
		}
		m = typeText(t, m, "e")
		checkFits(t, ansi.Strip(m.Render()), size[0], size[1])
		m, cmd = update(t, m, press("enter"))
		m, held := runHolding(t, m, cmd, func(msg tea.Msg) bool { _, ok := msg.(restoreDoneMsg); return ok })
		if !w.Busy() {
			t.Fatalf("the wizard is not busy while restoring: step %d", w.step)
		}
		// Quitting during a restore asks first.
		m, _ = update(t, m, press("ctrl+c"))
		if !m.askQuit {
			t.Fatal("ctrl+c during a restore does not ask")
		}
		m, _ = update(t, m, press("n"))
		for _, msg := range held {
			m, _ = update(t, m, msg)
		}
		if out := ansi.Strip(m.Render()); w.step != stepDone || !strings.Contains(out, "replayed     10 transactions, 20 rows") ||
			!strings.Contains(out, "large objects 2") || !strings.Contains(out, "temporary    3") || !strings.Contains(out, "owners       1") ||
			!strings.Contains(out, "NOT REPRODUCED 0/3000060") {
			t.Fatalf("summary:\n%s", out)
		}
		if len(f.restoreOpts) != 1 || f.restoreOpts[0].NoOwner {
			t.Fatalf("restore keeps owners unless asked: %+v", f.restoreOpts)
		}
		m = hit(t, m, "enter")
		if m.screen != nil || !strings.Contains(ansi.Strip(m.Render()), "restored orders") {
			t.Fatalf("back to the dashboard with a notice:\n%s", ansi.Strip(m.Render()))
		}
	}
}

// runHolding is run, except that the messages hold picks are not
// delivered but returned (a result the test delivers itself, or a command
// it keeps for later).
func runHolding(t *testing.T, m Model, cmd tea.Cmd, hold func(tea.Msg) bool) (Model, []tea.Msg) {
	t.Helper()
	var held []tea.Msg
	for i := 0; cmd != nil && i < 50; i++ {
		msg, ok := answer(cmd)
		cmd = nil
		if !ok || msg == nil {
			break
		}
		if cmds, ok := cmdList(msg); ok {
			for _, c := range cmds {
				var h []tea.Msg
				m, h = runHolding(t, m, c, hold)
				held = append(held, h...)
			}
			continue
		}
		if hold(msg) {
			held = append(held, msg)
			continue
		}
		m, cmd = update(t, m, msg)
	}
	return m, held
}

func TestRegisterFormValidatesBeforeProbing(t *testing.T) {
	m := newModel(sample())
	m = run(t, m, m.fetch())
	m = hit(t, m, "n")
	r := m.screen.(*register)
	m = typeText(t, m, "orders")
	m = hit(t, m, "enter")
	if out := ansi.Strip(m.Render()); !strings.Contains(out, `a source named "orders" exists already`) {
		t.Fatalf("duplicate name accepted:\n%s", out)
	}
	m = typeText(t, m, "_eu")
	m = hit(t, m, "enter")
	m = hit(t, m, "enter")
	if out := ansi.Strip(m.Render()); !strings.Contains(out, "dsn = ") && !strings.Contains(out, "missing") {
		t.Fatalf("empty dsn accepted:\n%s", out)
	}
	m = typeText(t, m, "postgres://u@h:99999999/db")
	m = hit(t, m, "enter")
	if out := ansi.Strip(m.Render()); !strings.Contains(out, "invalid port") {
		t.Fatalf("bad dsn accepted:\n%s", out)
	}
	m = hit(t, m, "ctrl+u")
	m = typeText(t, m, "postgres://u@h/db")
	m = hit(t, m, "enter")
	m = typeText(t, m, "sessions")
	m = hit(t, m, "enter")
	if out := ansi.Strip(m.Render()); !strings.Contains(out, "is not a schema.table pattern") {
		t.Fatalf("bad table pattern accepted:\n%s", out)
	}
	m = hit(t, m, "ctrl+u")
	m = typeText(t, m, "public.sessions")
	m = hit(t, m, "enter")
	m = typeText(t, m, "every 5m")
	m = hit(t, m, "enter")
	if out := ansi.Strip(m.Render()); !strings.Contains(out, "try '*/5 * * * *'") || r.probing {
		t.Fatalf("bad schedule accepted:\n%s", out)
	}
	if r.name != "orders_eu" || r.dsn != "postgres://u@h/db" || r.exclude != "public.sessions" {
		t.Fatalf("the form's values: %q %q %q", r.name, r.dsn, r.exclude)
	}
	m = hit(t, m, "esc")
	if m.screen != nil {
		t.Fatal("esc did not close the form")
	}
}

// Keys typed right after tab (a paste, tmux send-keys) land in the next
// field: the form moves at once, not by a command run later.
func TestRegisterFormMovesBeforeTheNextKey(t *testing.T) {
	m := newModel(sample())
	m = run(t, m, m.fetch())
	m = hit(t, m, "n")
	r := m.screen.(*register)
	m = typeText(t, m, "notes")
	m, _ = update(t, m, press("tab")) // its commands are not run
	m = typeText(t, m, "postgres://u@h/db")
	m, _ = update(t, m, press("tab"), press("tab"))
	m = typeText(t, m, "off")
	m, cmd := update(t, m, press("enter"))
	if r.name != "notes" || r.dsn != "postgres://u@h/db" || r.exclude != "" || r.sched != "off" {
		t.Fatalf("the fields got %q %q %q %q", r.name, r.dsn, r.exclude, r.sched)
	}
	if msg, _ := answer(cmd); msg != (formSubmittedMsg{r.form.Form}) {
		t.Fatalf("enter on the last field does not submit: %#v", msg)
	}
}

// esc on the probe's report goes back to the form with what was typed;
// a probe that answers after the user went back is ignored.
func TestRegisterReportBackToTheForm(t *testing.T) {
	f := sample()
	m := newModel(f)
	m = run(t, m, m.fetch())
	m = hit(t, m, "n")
	r := m.screen.(*register)
	m = typeText(t, m, "notes")
	m = hit(t, m, "tab")
	m = typeText(t, m, "postgres://u@h/db")
	m, _ = update(t, m, press("tab"), press("tab"))
	m, cmd := update(t, m, press("enter"))
	m, held := runHolding(t, m, cmd, func(msg tea.Msg) bool { _, ok := msg.(registerProbedMsg); return ok })
	if !r.probing || r.form != nil || len(held) != 1 {
		t.Fatalf("submitting does not probe: probing %v, held %v", r.probing, held)
	}
	m = hit(t, m, "esc") // back to the form while probing
	m, _ = update(t, m, registerProbedMsg{block: r.sourceBlock(), r: f.report})
	if r.report != nil || r.form == nil {
		t.Fatal("a late probe result replaced the form")
	}
	m = hit(t, m, "enter")
	m = hit(t, m, "enter")
	m = hit(t, m, "tab")
	m, cmd = update(t, m, press("enter"))
	m, _ = runHolding(t, m, cmd, func(msg tea.Msg) bool { _, ok := msg.(registerProbedMsg); return ok })
	rep, _ := f.Probe(context.Background(), "")
	m, _ = update(t, m, registerProbedMsg{block: r.sourceBlock(), r: rep})
	if out := ansi.Strip(m.Render()); r.report == nil || !strings.Contains(out, "add to config.toml") {
		t.Fatalf("the report is not shown:\n%s", out)
	}
	m = hit(t, m, "esc")
	if out := ansi.Strip(m.Render()); r.form == nil || !strings.Contains(out, "> notes") || !strings.Contains(out, "> postgres://u@h/db") {
		t.Fatalf("esc on the report does not bring the form back as typed:\n%s", out)
	}
}

// esc while the target is being checked goes back to the target; the
// check's late answer changes nothing.
func TestWizardEscWhileChecking(t *testing.T) {
	m := newModel(sample())
	m = run(t, m, m.fetch())
	m = hit(t, m, "R")
	w := m.screen.(*wizard)
	m = typeText(t, m, "latest")
	m = hit(t, m, "enter")
	m, cmd := update(t, m, press("enter"))
	m, _ = runHolding(t, m, cmd, func(msg tea.Msg) bool { _, ok := msg.(targetCheckedMsg); return ok })
	if w.working != checking {
		t.Fatalf("not checking: %q", w.working)
	}
	m = hit(t, m, "esc")
	if w.step != stepTarget || w.form == nil || w.working != "" {
		t.Fatalf("esc while checking: step %d, working %q", w.step, w.working)
	}
	m, cmd = update(t, m, targetCheckedMsg{info: restore.TargetInfo{Database: "x"}})
	if cmd != nil || w.step != stepTarget || w.form == nil {
		t.Fatalf("a late check moved the wizard on: step %d", w.step)
	}
}

func TestViewOwnsAltScreen(t *testing.T) {
	v := newModel(sample()).View()
	if !v.AltScreen || v.WindowTitle != "btfu" {
		t.Fatalf("view: alt=%v title=%q", v.AltScreen, v.WindowTitle)
	}
}

// Typing restore --no-owner at the confirmation restores without owners,
// for a target without the source's roles (the CLI's --no-owner).
func TestWizardRestoresWithoutOwnersWhenAsked(t *testing.T) {
	f := sample()
	m := newModel(f)
	m = run(t, m, m.fetch())
	m = sized(t, m, 80, 24)
	m = hit(t, m, "R")
	w := m.screen.(*wizard)
	m = typeText(t, m, "latest")
	m = hit(t, m, "enter")
	if w.step != stepTarget {
		t.Fatalf("step %d: %s", w.step, ansi.Strip(m.Render()))
	}
	w.form, w.working = nil, checking // the target check needs a database; its result is delivered
	m, cmd := update(t, m, targetCheckedMsg{info: restore.TargetInfo{Database: "shop_restore", ServerVersion: "15.8"}})
	m = run(t, m, cmd)
	if w.step != stepPlan {
		t.Fatalf("step %d: %s", w.step, w.problem)
	}
	m = hit(t, m, "enter")
	if out := ansi.Strip(m.Render()); !strings.Contains(out, "restore --no-owner") {
		t.Fatalf("the confirmation does not offer --no-owner:\n%s", out)
	}
	m = typeText(t, m, "restore --no-owner")
	m = hit(t, m, "enter")
	if len(f.restoreOpts) != 1 || !f.restoreOpts[0].NoOwner {
		t.Fatalf("restore --no-owner: %+v", f.restoreOpts)
	}
}
