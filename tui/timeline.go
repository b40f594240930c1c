package tui

import (
	"context"
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/internal/human"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/tui/styles"
)

// zooms are the timeline's spans.
var zooms = []struct {
	name string
	span time.Duration
}{{"hour", time.Hour}, {"day", 24 * time.Hour}, {"week", 7 * 24 * time.Hour}}

// timeline draws a source's coverage on a time axis: base backups as
// markers, restorable coverage as a bar, gaps in red, and a cursor that
// shows what a restore to that instant would use.
type timeline struct {
	ctx    context.Context
	eng    Engine
	st     styles.Styles
	name   string
	now    func() time.Time
	w, h   int
	cov    *coverage.Source
	err    error
	zoom   int
	end    time.Time // right edge of the axis
	cursor time.Time
	placed bool // the cursor was put on the coverage (or moved by the user)
	plan   *restore.Plan
	perr   error
	keys   timelineKeys
}

type coverageMsg struct {
	cov coverage.Source
	err error
}

type planMsg struct {
	at   time.Time
	plan *restore.Plan
	err  error
}

func newTimelineScreen(c *common, name string) Component {
	t := &timeline{ctx: c.ctx, eng: c.eng, st: c.styles, name: name, now: c.now, w: 80, h: 20}
	t.end = t.now()
	t.cursor = t.end
	t.keys = newTimelineKeys()
	return t
}

// newTimeline is the timeline factory the root uses.
var newTimeline = newTimelineScreen

// Init reads the coverage; the cursor is put on it when it arrives.
func (t *timeline) Init() tea.Cmd { return t.load() }

// Typing: the timeline has no text field.
func (t *timeline) Typing() bool { return false }

// newest is the newest instant a restore reaches: the end of the latest
// restorable range (zero without coverage).
func newest(c coverage.Source) time.Time {
	var n time.Time
	for _, r := range c.Ranges {
		if r.ToTime.After(n) {
			n = r.ToTime
		}
	}
	return n
}

// place opens the timeline on the newest restorable instant, so the first
// thing shown is a restore that works.
func (t *timeline) place() tea.Cmd {
	t.placed = true
	if n := newest(*t.cov); !n.IsZero() && n.Before(t.cursor) {
		t.cursor = n
		t.recenter()
	}
	return t.planAt()
}

func (t *timeline) load() tea.Cmd {
	ctx, eng, name := t.ctx, t.eng, t.name
	return func() tea.Msg {
		c, err := eng.Coverage(ctx, name)
		return coverageMsg{c, err}
	}
}

func (t *timeline) planAt() tea.Cmd {
	ctx, eng, name, at := t.ctx, t.eng, t.name, t.cursor
	return func() tea.Msg {
		p, err := eng.PlanRestore(ctx, name, restore.Target{Time: at})
		return planMsg{at, p, err}
	}
}

func (t *timeline) SetSize(w, h int) { t.w, t.h = w, h }
func (t *timeline) ShortHelp() []key.Binding {
	return []key.Binding{t.keys.Left, t.keys.Right, t.keys.ZoomIn, t.keys.ZoomOut, t.keys.Restore, t.keys.Back}
}
func (t *timeline) FullHelp() [][]key.Binding { return [][]key.Binding{t.ShortHelp()} }

func (t *timeline) cols() int { return max(t.w-2, 20) }

// step is the time one column stands for.
func (t *timeline) step() time.Duration { return zooms[t.zoom].span / time.Duration(t.cols()) }

func (t *timeline) Update(msg tea.Msg) (Component, tea.Cmd) {
	switch msg := msg.(type) {
	case coverageMsg:
		t.err = msg.err
		if msg.err == nil {
			c := msg.cov
			t.cov = &c
			if !t.placed {
				return t, t.place()
			}
		}
	case planMsg:
		if msg.at.Equal(t.cursor) {
			t.plan, t.perr = msg.plan, msg.err
		}
	case tickMsg:
		return t, t.load()
	case tea.KeyPressMsg:
		switch {
		case key.Matches(msg, t.keys.Back):
			return t, func() tea.Msg { return CloseMsg{} }
		case key.Matches(msg, t.keys.Left):
			t.placed = true
			t.cursor = t.cursor.Add(-t.step())
			if t.cursor.Before(t.end.Add(-zooms[t.zoom].span)) {
				t.end = t.end.Add(-zooms[t.zoom].span / 2)
			}
			return t, t.planAt()
		case key.Matches(msg, t.keys.Right):
			t.placed = true
			t.cursor = t.cursor.Add(t.step())
			if now := t.now(); t.cursor.After(now) {
				t.cursor = now
			}
			if t.cursor.After(t.end) {
				t.end = t.end.Add(zooms[t.zoom].span / 2)
			}
			return t, t.planAt()
		case key.Matches(msg, t.keys.ZoomIn):
			t.zoom = max(t.zoom-1, 0)
			t.recenter()
		case key.Matches(msg, t.keys.ZoomOut):
			t.zoom = min(t.zoom+1, len(zooms)-1)
			t.recenter()
		case key.Matches(msg, t.keys.Restore):
			name, at := t.name, t.cursor
			return t, func() tea.Msg { return OpenWizardMsg{Source: name, At: at} }
		}
	}
	return t, nil
}

// recenter keeps the cursor on screen after a zoom.
func (t *timeline) recenter() {
	span := zooms[t.zoom].span
	if t.cursor.Before(t.end.Add(-span)) || t.cursor.After(t.end) {
		t.end = t.cursor.Add(span / 2)
	}
	if now := t.now(); t.end.After(now.Add(span / 2)) {
		t.end = now
	}
}

func (t *timeline) View() string {
	var b strings.Builder
	b.WriteString(t.st.Header.Render("Coverage of "+t.name) + t.st.Muted.Render("  zoom: "+zooms[t.zoom].name) + "\n")
	if t.err != nil {
		return b.String() + t.st.Error.Render(t.err.Error()) + "\n"
	}
	if t.cov == nil {
		return b.String() + t.st.Muted.Render("reading coverage…") + "\n"
	}
	n, step := t.cols(), t.step()
	start := t.end.Add(-zooms[t.zoom].span)
	var markers, bar, cursor strings.Builder
	var first time.Time
	for _, r := range t.cov.Ranges {
		if first.IsZero() || r.FromTime.Before(first) {
			first = r.FromTime
		}
	}
	now := t.now()
	for i := range n {
		from := start.Add(time.Duration(i) * step)
		to := from.Add(step)
		mark := " "
		for _, bb := range t.cov.Bases {
			if bb.Status == "complete" && !bb.SnapshotTime.Before(from) && bb.SnapshotTime.Before(to) {
				mark = t.st.Marker.Render("▼")
			}
		}
		markers.WriteString(mark)
		covered := false
		for _, r := range t.cov.Ranges {
			if r.FromTime.Before(to) && r.ToTime.After(from) {
				covered = true
			}
		}
		switch {
		case covered:
			bar.WriteString(t.st.Covered.Render("█"))
		case !first.IsZero() && from.After(first) && from.Before(now):
			bar.WriteString(t.st.Gap.Render("░"))
		default:
			bar.WriteString(t.st.Muted.Render("·"))
		}
		if (!t.cursor.Before(from) && t.cursor.Before(to)) || (i == n-1 && !t.cursor.Before(to)) {
			cursor.WriteString("▲")
		} else {
			cursor.WriteString(" ")
		}
	}
	b.WriteString(" " + markers.String() + "\n")
	b.WriteString(" " + bar.String() + "\n")
	b.WriteString(" " + cursor.String() + "\n")
	left := start.UTC().Format("01-02 15:04")
	right := t.end.UTC().Format("01-02 15:04") + "Z"
	b.WriteString(" " + t.st.Muted.Render(left+strings.Repeat(" ", max(n-len(left)-len(right), 1))+right) + "\n")
	b.WriteString(t.st.Muted.Render(" ▼ base backup  █ restorable  ░ gap  · nothing stored") + "\n\n")
	b.WriteString("cursor " + t.st.Input.Render(t.cursor.UTC().Format("2006-01-02 15:04:05Z")) + "\n")
	switch {
	case t.perr != nil:
		b.WriteString(wrapStyled(t.st.Error, t.perr.Error(), t.w, 2) + "\n")
	case t.plan != nil:
		p := t.plan
		b.WriteString(wrap(fmt.Sprintf("a restore here uses base %s (consistent at %s)", p.Base.ArtifactKey, p.Base.ConsistentLSN), t.w, 2) + "\n")
		b.WriteString(wrap(fmt.Sprintf("and %d segment(s), %s, up to %d transactions", len(p.Segments), human.Bytes(p.SegmentBytes), p.Transactions), t.w, 2) + "\n")
	}
	return b.String()
}
