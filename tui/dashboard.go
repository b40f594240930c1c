package tui

import (
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/internal/human"
	"github.com/btfu/btfu/tui/styles"
)

// dashboard is the screen under every other: the sources with their
// status, a selection, and keys that act on the selected source or open
// another screen. It gets every status the root reads, whichever screen
// has the focus, so it is current when it has it again.
type dashboard struct {
	*common
	w      int
	status engine.Status
	err    error
	loaded bool
	sel    int
}

func newDashboard(c *common, width int) dashboard {
	return dashboard{common: c, w: width}
}

// Init reads nothing: the root reads the status for every screen.
func (d *dashboard) Init() tea.Cmd { return nil }

// Typing: the dashboard has no text field.
func (d *dashboard) Typing() bool { return false }

// SetSize: the dashboard is as long as its sources; the root cuts it to
// the screen.
func (d *dashboard) SetSize(w, _ int) { d.w = w }

func (d *dashboard) ShortHelp() []key.Binding { return d.keys.ShortHelp() }

func (d *dashboard) FullHelp() [][]key.Binding { return d.keys.FullHelp() }

// selected is the name of the selected source; "" without sources.
func (d *dashboard) selected() string {
	if d.sel < len(d.status.Sources) {
		return d.status.Sources[d.sel].Name
	}
	return ""
}

// Update takes the status and the keys the dashboard answers itself;
// the keys that ask the root for something go through request.
func (d *dashboard) Update(msg tea.Msg) (Component, tea.Cmd) {
	switch msg := msg.(type) {
	case statusMsg:
		d.status, d.err, d.loaded = msg.st, msg.err, true
		// Sources may have gone: the selection stays on one that is there.
		d.sel = min(d.sel, max(len(d.status.Sources)-1, 0))
	case tea.KeyPressMsg:
		name := d.selected()
		switch {
		case key.Matches(msg, d.keys.Refresh):
			return d, d.fetch()
		case key.Matches(msg, d.keys.Up):
			d.sel = max(d.sel-1, 0)
		case key.Matches(msg, d.keys.Down):
			d.sel = min(d.sel+1, max(len(d.status.Sources)-1, 0))
		case name == "":
		case key.Matches(msg, d.keys.Pause):
			return d, pauseCmd(d.ctx, d.eng, name, !d.status.Sources[d.sel].Paused)
		}
	}
	return d, nil
}

// request is what a key asks of the root: a screen to open (openMsg,
// OpenWizardMsg) or a backup to start with its notice (startMsg); nil
// for the keys Update answers. The root applies it in the same Update,
// so keys typed right after (a paste, tmux send-keys) reach the screen
// it opened, not the dashboard.
func (d *dashboard) request(msg tea.KeyPressMsg) tea.Msg {
	name := d.selected()
	switch {
	case key.Matches(msg, d.keys.Register):
		return openMsg{screen: registerScreen}
	case key.Matches(msg, d.keys.Log):
		return openMsg{screen: logScreen}
	case key.Matches(msg, d.keys.Restore):
		return OpenWizardMsg{Source: name}
	case name == "":
		return nil
	case key.Matches(msg, d.keys.Detail):
		return openMsg{screen: detailScreen, source: name}
	case key.Matches(msg, d.keys.Timeline):
		return openMsg{screen: timelineScreen, source: name}
	case key.Matches(msg, d.keys.Backup):
		return startMsg{notice: "base backup of " + name + " started…", cmd: backupCmd(d.ctx, d.eng, name)}
	}
	return nil
}

// View is the sources, or why there are none to show yet.
func (d *dashboard) View() string {
	switch {
	case !d.loaded:
		return d.styles.Muted.Render("reading status…") + "\n"
	case d.err != nil:
		return wrapStyled(d.styles.Error, "status unavailable: "+d.err.Error(), d.w, 2) + "\n"
	}
	return renderSources(d.styles, d.status, d.sel, d.w, d.now())
}

// renderSources renders one block per source: a row of the essentials, a
// second row of backup and WAL facts, and a red line when the source
// needs the user.
func renderSources(st styles.Styles, status engine.Status, sel, width int, now time.Time) string {
	if len(status.Sources) == 0 {
		return wrapStyled(st.Muted, "no sources configured; press n to register one, or add a [[source]] to config.toml", width, 0) + "\n"
	}
	wide := width >= 110
	cols := []col{{"SOURCE", 14}, {"STATE", 11}, {"LAG", 16}, {"RPO", 7}, {"TX/S", 7}}
	if wide {
		cols = append(cols, col{"MB/S", 7}, col{"FLUSHED LSN", 13}, col{"LAG (10 MIN)", 22})
	} else {
		cols = append(cols, col{"LAG (10 MIN)", 14})
	}
	// Long source names take the columns the table leaves free.
	used, longest := 0, 0
	for _, c := range cols {
		used += c.width
	}
	for _, s := range status.Sources {
		longest = max(longest, lipgloss.Width(s.Name))
	}
	cols[0].width += min(max(longest+1-cols[0].width, 0), max(width-used, 0))
	var b strings.Builder
	for _, c := range cols {
		b.WriteString(st.Header.Render(pad(c.title, c.width-1)) + " ")
	}
	b.WriteString("\n")
	for i, s := range status.Sources {
		lag, rpo := "-", "-"
		if s.LagBytes != nil {
			lag = human.Bytes(*s.LagBytes)
		}
		if s.RPOSeconds != nil {
			rpo = human.Age(time.Duration(*s.RPOSeconds * float64(time.Second)))
		}
		cells := []string{s.Name, s.State, lag, rpo, fmt.Sprintf("%.0f", s.TxPerSec)}
		spark := sparkline(s.LagHistory, cols[len(cols)-1].width-1)
		if wide {
			cells = append(cells, fmt.Sprintf("%.2f", s.BytesPerSec/(1<<20)), s.FlushedLSN, spark)
		} else {
			cells = append(cells, spark)
		}
		var row strings.Builder
		for j, c := range cols {
			cell := pad(ansi.Truncate(cells[j], c.width-1, "…"), c.width)
			if j == 0 {
				cell = pad(cutMiddle(cells[j], c.width-1), c.width)
			}
			if j == 1 {
				cell = st.State(s.State).Render(cell)
			}
			row.WriteString(cell)
		}
		line := row.String()
		if i == sel {
			line = st.Selected.Render(line)
		}
		b.WriteString(line + "\n")
		b.WriteString(styleLines(st.Muted, joinWrapped(facts(s, now), " · ", width, 2)) + "\n")
		if s.Attention != "" {
			b.WriteString(wrapStyled(st.Error, "  ! "+s.Attention, width, 4) + "\n")
		}
		b.WriteString(drillLine(st, s, width, now)) // drill.go
	}
	return b.String()
}

type col struct {
	title string
	width int
}

// facts are the second line of a source: backups, coverage, WAL, restore;
// the first is indented.
func facts(s engine.SourceStatus, now time.Time) []string {
	var parts []string
	if s.LastBackup != nil {
		parts = append(parts, "base "+human.Age(now.Sub(s.LastBackup.At))+" ago")
	} else {
		parts = append(parts, "no base yet")
	}
	if s.NextBackup != nil {
		parts = append(parts, "next in "+human.Age(s.NextBackup.Sub(now)))
	}
	if len(s.Coverage) > 0 {
		parts = append(parts, "restorable from "+s.Coverage[0].FromTime.UTC().Format("01-02 15:04")+"Z")
	}
	if s.RetainedBytes != nil {
		parts = append(parts, fmt.Sprintf("WAL %s/%s", human.Bytes(*s.RetainedBytes), human.Bytes(s.WALBudget)))
	}
	if r := s.LastRestore; r != nil {
		parts = append(parts, "last restore "+r.Status+" "+human.Age(now.Sub(r.StartedAt))+" ago")
	}
	if s.EncryptedTo > 0 {
		parts = append(parts, "encrypted (age)")
	}
	parts[0] = "  " + parts[0]
	return parts
}

// age renders a duration as 45s, 12m, 3.5h, 4d.

var sparks = []rune("▁▂▃▄▅▆▇█")

// sparkline draws the last width values, scaled to their maximum.
func sparkline(vals []int64, width int) string {
	if len(vals) == 0 || width <= 0 {
		return ""
	}
	if len(vals) > width {
		// Average down to width buckets.
		out := make([]int64, width)
		for i := range out {
			lo, hi := i*len(vals)/width, (i+1)*len(vals)/width
			var sum int64
			for _, v := range vals[lo:hi] {
				sum += v
			}
			out[i] = sum / int64(max(hi-lo, 1))
		}
		vals = out
	}
	var top int64
	for _, v := range vals {
		top = max(top, v)
	}
	var b strings.Builder
	for _, v := range vals {
		i := 0
		if top > 0 {
			i = int(v * int64(len(sparks)-1) / top)
		}
		b.WriteRune(sparks[i])
	}
	return b.String()
}

func pad(s string, w int) string {
	if n := lipgloss.Width(s); n < w {
		return s + strings.Repeat(" ", w-n)
	}
	return s
}

// cutMiddle fits a name into w columns by cutting its middle, so names
// that share a prefix stay apart (orders_eu_…_primary, orders_eu_…_replica).
func cutMiddle(s string, w int) string {
	n := ansi.StringWidth(s)
	if n <= w || w < 5 {
		return ansi.Truncate(s, w, "…")
	}
	head := (w - 1) / 2
	tail := w - 1 - head
	return ansi.Truncate(s, head, "") + "…" + ansi.TruncateLeft(s, n-tail, "")
}
