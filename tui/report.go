package tui

import (
	"fmt"
	"strings"

	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/tui/styles"
)

// reportHead is a probe report's first line at width w: where, which
// server, which provider.
func reportHead(r *probe.Report, w int) string {
	return wrap(fmt.Sprintf("%s · PostgreSQL %s · %s", r.Target, r.ServerVersion, r.Provider), w, 2)
}

// reportLines renders the rest of a probe report at width w, for the
// source detail and the register screen alike: the checks (every one, or
// with problemsOnly the warnings and failures), their fixes, and the plan.
func reportLines(st styles.Styles, r *probe.Report, w int, problemsOnly bool) []string {
	var lines []string
	add := func(s string) { lines = append(lines, strings.Split(s, "\n")...) }
	for _, c := range r.Checks {
		if problemsOnly && (c.Status == probe.OK || c.Status == probe.Info) {
			continue
		}
		colour := map[probe.Status]func(...string) string{probe.OK: st.OK.Render, probe.Warn: st.Warn.Render, probe.Fail: st.Error.Render}[c.Status]
		if colour == nil {
			colour = st.Muted.Render
		}
		// The finding wraps under itself; the status word keeps its colour.
		status := fmt.Sprintf("%-4s", c.Status)
		text := strings.Split(wrap(status+" "+pad(c.ID, 18)+" "+c.Finding, w, 24), "\n")
		text[0] = colour(status) + text[0][len(status):]
		add(strings.Join(text, "\n"))
		if c.Fix != "" && c.Status != probe.OK {
			add(wrapStyled(st.Muted, "     fix: "+c.Fix, w, 10))
		}
	}
	pl := r.Plan
	add("")
	add(st.Header.Render("Plan"))
	add(wrap(fmt.Sprintf("publication %s %s, %d table(s); slot %s; DDL %s", pl.Publication, pl.PublicationForm, len(pl.Tables), pl.Slot, map[bool]string{true: "captured", false: "derived from relation changes"}[pl.DDLCapture]), w, 2))
	if len(pl.Excluded) > 0 {
		add(wrap("excluded: "+strings.Join(pl.Excluded, ", "), w, 2))
	}
	if len(pl.Undecided) > 0 {
		add(wrapStyled(st.Error, "undecided (no replica identity): "+strings.Join(pl.Undecided, ", "), w, 2))
	}
	return lines
}
