package corpus

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// Timeline collects the duration of each phase of the corpus test and the
// outcome of each restore, for the summary at the end.
type Timeline struct {
	mu       sync.Mutex
	start    time.Time
	phases   []phase
	restores []RestoreOutcome
}

type phase struct {
	name string
	took time.Duration
}

// RestoreOutcome is one restore of a protected run, compared.
type RestoreOutcome struct {
	Run, Label string
	Took       time.Duration // btfu restore
	Compared   *Comparison   // nil when the restore failed
	Err        string        // why the restore failed
}

// NewTimeline starts the clock.
func NewTimeline() *Timeline { return &Timeline{start: time.Now()} }

// Phase records that name took d.
func (tl *Timeline) Phase(name string, d time.Duration) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.phases = append(tl.phases, phase{name, d})
}

// Since records a phase that started at start and ends now, and returns
// its duration.
func (tl *Timeline) Since(name string, start time.Time) time.Duration {
	d := time.Since(start)
	tl.Phase(name, d)
	return d
}

// Restore records a restore's outcome.
func (tl *Timeline) Restore(o RestoreOutcome) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.restores = append(tl.restores, o)
}

// String is the summary: every restore's figures, then every phase's
// duration and the total.
func (tl *Timeline) String() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var b strings.Builder
	if len(tl.restores) > 0 {
		b.WriteString("restores compared with the source:\n")
		for _, o := range tl.restores {
			fmt.Fprintf(&b, "  %-8s %-11s %6s  %s\n", o.Run, o.Label, o.Took.Round(100*time.Millisecond), o.figures())
		}
	}
	b.WriteString("phases:\n")
	for _, p := range tl.phases {
		fmt.Fprintf(&b, "  %-46s %8s\n", p.name, p.took.Round(100*time.Millisecond))
	}
	fmt.Fprintf(&b, "  %-46s %8s\n", "total", time.Since(tl.start).Round(time.Second))
	return b.String()
}

// figures is one line: the tables by class (LEFT OUT by reason), then
// what else failed.
func (o RestoreOutcome) figures() string {
	if o.Compared == nil {
		return "RESTORE FAILED: " + cut(o.Err, 400)
	}
	c := o.Compared
	var left []string
	counts := map[string]int{}
	for _, v := range c.Tables {
		if v.Class == LeftOut {
			counts[v.Reason]++
		}
	}
	for _, r := range reasonOrder {
		if counts[r] > 0 {
			left = append(left, fmt.Sprintf("%s %d", shortReason[r], counts[r]))
		}
	}
	leftOut := fmt.Sprintf("%d", c.Count(LeftOut))
	if len(left) > 0 {
		leftOut += " (" + strings.Join(left, ", ") + ")"
	}
	missing, extra := 0, len(c.Extra)
	for _, kind := range ObjectKinds {
		missing += len(c.ObjectsMissing[kind])
		extra += len(c.ObjectsExtra[kind])
	}
	acc := 0
	for _, s := range c.Skipped {
		if s.Limit != "" {
			acc++
		}
	}
	verdict := "ok"
	if n := len(c.Failures()); n > 0 {
		verdict = fmt.Sprintf("%d FAILURES", n)
	}
	return fmt.Sprintf("%d tables: %d equal, LEFT OUT %s, column order %d, FAILED %d; objects missing %d, extra %d; sequences behind %d; skipped DDL %d accepted, %d failing: %s",
		len(c.Tables), c.Count(Equal), leftOut, c.Count(ColumnOrder), c.Count(Failed), missing, extra, len(c.SequencesBehind), acc, len(c.Skipped)-acc, verdict)
}

var shortReason = map[string]string{
	ReasonUnlogged:  "unlogged",
	ReasonNothing:   "identity nothing",
	ReasonNoKey:     "no key",
	ReasonLateJoin:  "joined after the base",
	ReasonPartition: "partition left out",
}
