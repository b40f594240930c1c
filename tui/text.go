package tui

import (
	"strings"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"
)

// wrap fits plain text s into width columns instead of cutting it: lines
// break at spaces (or after a comma, '@' or slash, for lists and
// connection strings), a word longer than a line is split, and continuation lines are
// indented by indent columns so a label column stays clear. Lines that
// carry the point (messages, findings, plans, targets) go through it; only
// list cells and decoration are truncated.
func wrap(s string, width, indent int) string {
	var out []string
	for _, para := range strings.Split(s, "\n") {
		out = append(out, wrapLine(para, width, indent)...)
	}
	return strings.Join(out, "\n")
}

// wrapStyled wraps s, then renders each line with st (so no style spans a
// line break and no line is padded).
func wrapStyled(st lipgloss.Style, s string, width, indent int) string {
	return styleLines(st, wrap(s, width, indent))
}

// styleLines renders each line of s with st.
func styleLines(st lipgloss.Style, s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = st.Render(l)
	}
	return strings.Join(lines, "\n")
}

func wrapLine(s string, width, indent int) []string {
	if width <= 0 || ansi.StringWidth(s) <= width {
		return []string{s}
	}
	if indent > width/2 {
		indent = 0
	}
	var lines []string
	limit, prefix := width, ""
	for ansi.StringWidth(s) > limit {
		cut := breakAt(s, limit)
		lines = append(lines, prefix+strings.TrimRight(s[:cut], " "))
		s = strings.TrimLeft(s[cut:], " ")
		limit, prefix = width-indent, strings.Repeat(" ", indent)
	}
	if s != "" {
		lines = append(lines, prefix+s)
	}
	return lines
}

// breakAt is the byte offset where a line of at most limit columns ends:
// after the last space, comma, '@' or slash that fits, else at limit.
func breakAt(s string, limit int) int {
	cols, last := 0, -1
	for i, r := range s {
		w := ansi.StringWidth(string(r))
		if cols+w > limit {
			switch {
			case r == ' ' && i > 0:
				return i
			case last > 0:
				return last
			case i == 0:
				return len(string(r))
			}
			return i
		}
		cols += w
		switch {
		case r == ' ' && i > 0:
			last = i
		case r == ',', r == '@', r == '/' && (i+1 >= len(s) || s[i+1] != '/'):
			last = i + 1
		}
	}
	return len(s)
}

// joinWrapped joins parts with sep, starting a new line (indented) before a
// part that would not fit, so a part is split only when it alone is wider
// than a line.
func joinWrapped(parts []string, sep string, width, indent int) string {
	var lines []string
	cur := ""
	for _, p := range parts {
		next := p
		if cur != "" {
			next = cur + sep + p
		}
		if cur != "" && ansi.StringWidth(next) > width {
			lines = append(lines, cur)
			next = strings.Repeat(" ", indent) + p
		}
		cur = next
	}
	lines = append(lines, cur)
	return wrap(strings.Join(lines, "\n"), width, indent)
}
