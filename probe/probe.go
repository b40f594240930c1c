// Package probe checks, before btfu touches a database, whether
// logical-tier recovery will work there, what btfu will create, and what
// will not be protected (../shared/DESIGN.md sections 5 and 6). Its Plan
// is carried out by sourcedb.Register.
//
// Every check returns a status (ok, warn, fail, info), a one-line finding,
// details and a fix. A probe changes nothing on the source: the checks that
// need to try something (creating a publication or an event trigger) do it
// inside a transaction that is rolled back.
package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/sourcedb"
)

// Status of a check.
type Status string

// Check statuses, from best to worst.
const (
	OK   Status = "ok"
	Info Status = "info"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Check is one finding about the source.
type Check struct {
	ID      string   `json:"id"`
	Status  Status   `json:"status"`
	Finding string   `json:"finding"`
	Details []string `json:"details,omitempty"`
	Fix     string   `json:"fix,omitempty"`
}

// Report is the result of a probe.
type Report struct {
	Source           string           `json:"source"`
	Target           string           `json:"target"` // host:port/db, no credentials
	At               time.Time        `json:"at"`
	ServerVersion    string           `json:"server_version"`
	ServerMajor      int              `json:"server_major"`
	SystemIdentifier string           `json:"system_identifier,omitempty"`
	Provider         string           `json:"provider"`
	Checks           []Check          `json:"checks"`
	Tables           []sourcedb.Table `json:"tables"`
	Plan             sourcedb.Plan    `json:"plan"`
}

// Failed reports whether any check failed.
func (r *Report) Failed() bool {
	for _, c := range r.Checks {
		if c.Status == Fail {
			return true
		}
	}
	return false
}

// Check returns the check with the given id, if present.
func (r *Report) Check(id string) (Check, bool) {
	for _, c := range r.Checks {
		if c.ID == id {
			return c, true
		}
	}
	return Check{}, false
}

func (r *Report) add(c Check) { r.Checks = append(r.Checks, c) }

// Options tune a probe.
type Options struct {
	// WALSample is how long to watch the WAL position to estimate the
	// source's WAL rate; 0 means one second.
	WALSample time.Duration
}

// Run probes the source. It returns an error only when the source cannot
// be reached at all (a *sourcedb.ConnError); everything else is a check.
func Run(ctx context.Context, src *config.Source, opts Options) (*Report, error) {
	if opts.WALSample == 0 {
		opts.WALSample = time.Second
	}
	conn, err := sourcedb.Connect(ctx, src)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	r := &Report{Source: src.Name, Target: src.Describe(), At: time.Now().UTC()}
	p := &prober{ctx: ctx, src: src, conn: conn, r: r, opts: opts}
	p.run()
	return r, nil
}

type prober struct {
	ctx  context.Context
	src  *config.Source
	conn *pgx.Conn
	r    *Report
	opts Options

	superuser   bool
	replication bool
	dbSize      int64
	walRate     float64 // bytes per second
}

func (p *prober) run() {
	steps := []func(){
		p.checkServer, p.checkTLS, p.checkWALLevel, p.checkRole, p.checkReplicationConnection,
		p.checkPooler, p.checkSlotsAndSenders, p.checkTables, p.checkPublication, p.checkDDLCapture,
		p.checkExistingSlots, p.checkLargeObjects, p.checkSequences, p.checkExtensions,
		p.checkPgDump, p.checkWALBudget, p.checkDrills,
	}
	for _, step := range steps {
		if p.ctx.Err() != nil {
			return
		}
		step()
	}
}

// queryErr turns a failed catalogue query into a check, so one missing
// privilege does not hide every other finding.
func (p *prober) queryErr(id string, err error) {
	p.r.add(Check{ID: id, Status: Warn, Finding: fmt.Sprintf("could not check: %v", err)})
}

// ErrChecksFailed: registration refused because the probe found a failure.
var ErrChecksFailed = errors.New("probe checks failed")

// FailedChecks returns a one-line summary of failed checks with fixes.
func (r *Report) FailedChecks() string {
	var parts []string
	for _, c := range r.Checks {
		if c.Status == Fail {
			s := c.ID + ": " + c.Finding
			if len(c.Details) > 0 && len(c.Details) <= 5 {
				s += " [" + strings.Join(c.Details, "; ") + "]"
			}
			if c.Fix != "" {
				s += " (fix: " + c.Fix + ")"
			}
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "; ")
}

// Registrable is nil when no check failed; otherwise it says why the
// source is not registered (wrapping ErrChecksFailed), with each fix.
func (r *Report) Registrable(source string) error {
	if !r.Failed() {
		return nil
	}
	return fmt.Errorf("source %s not registered, %w: %s", source, ErrChecksFailed, r.FailedChecks())
}
