package tui

import (
	"context"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/tui/styles"
)

// detail is one source: the probe's checks and plan, with actions.
type detail struct {
	ctx     context.Context
	eng     Engine
	st      styles.Styles
	name    string
	w, h    int
	report  *probe.Report
	err     error
	probing bool
	paused  bool
	notice  NoticeMsg
	scroll  int
	keys    detailKeys
}

type probeMsg struct {
	name string
	r    *probe.Report
	err  error
}

// newDetail is the source detail screen.
func newDetail(c *common, name string) Component {
	return &detail{ctx: c.ctx, eng: c.eng, st: c.styles, name: name, probing: true, keys: newDetailKeys()}
}

func (d *detail) Init() tea.Cmd { return d.probe() }

// Typing: the detail has no text field.
func (d *detail) Typing() bool { return false }

func (d *detail) probe() tea.Cmd {
	ctx, eng, name := d.ctx, d.eng, d.name
	return func() tea.Msg {
		r, err := eng.Probe(ctx, name)
		return probeMsg{name: name, r: r, err: err}
	}
}

func (d *detail) SetSize(w, h int) { d.w, d.h = w, h }

func (d *detail) ShortHelp() []key.Binding {
	return []key.Binding{d.keys.Probe, d.keys.Backup, d.keys.Pause, d.keys.Down, d.keys.Back}
}

func (d *detail) FullHelp() [][]key.Binding { return [][]key.Binding{d.ShortHelp()} }

func (d *detail) Update(msg tea.Msg) (Component, tea.Cmd) {
	switch msg := msg.(type) {
	case probeMsg:
		d.report, d.err, d.probing = msg.r, msg.err, false
	case statusMsg:
		for _, s := range msg.st.Sources {
			if s.Name == d.name {
				d.paused = s.Paused
			}
		}
	case NoticeMsg:
		d.notice = msg
	case tea.KeyPressMsg:
		switch {
		case key.Matches(msg, d.keys.Back):
			return d, func() tea.Msg { return CloseMsg{} }
		case key.Matches(msg, d.keys.Probe):
			d.probing = true
			return d, d.probe()
		case key.Matches(msg, d.keys.Backup):
			d.notice = NoticeMsg{Text: "base backup started…"}
			return d, backupCmd(d.ctx, d.eng, d.name)
		case key.Matches(msg, d.keys.Pause):
			return d, pauseCmd(d.ctx, d.eng, d.name, !d.paused)
		case key.Matches(msg, d.keys.Down):
			d.scroll++
		case key.Matches(msg, d.keys.Up):
			d.scroll = max(d.scroll-1, 0)
		}
	}
	return d, nil
}

func (d *detail) View() string {
	var b strings.Builder
	b.WriteString(wrapStyled(d.st.Header, "Source "+d.name, d.w, 2) + "\n")
	if d.notice.Text != "" {
		st := d.st.OK
		if d.notice.Err {
			st = d.st.Error
		}
		b.WriteString(wrapStyled(st, d.notice.Text, d.w, 2) + "\n")
	}
	switch {
	case d.probing:
		b.WriteString(d.st.Muted.Render("probing…") + "\n")
	case d.err != nil:
		b.WriteString(wrapStyled(d.st.Error, "probe failed: "+d.err.Error(), d.w, 2) + "\n")
	case d.report != nil:
		b.WriteString(reportHead(d.report, d.w) + "\n")
		lines := reportLines(d.st, d.report, d.w, false)
		room := max(d.h-strings.Count(b.String(), "\n"), 3)
		d.scroll = min(d.scroll, max(len(lines)-room, 0))
		end := min(d.scroll+room, len(lines))
		b.WriteString(strings.Join(lines[d.scroll:end], "\n") + "\n")
	}
	return b.String()
}
