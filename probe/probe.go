// Package probe checks, before btfu touches a database, whether
// logical-tier recovery will work there, what btfu will create, and what
// will not be protected; and registers a source by creating what the plan
// announced (../shared/DESIGN.md sections 5 and 6).
//
// Every check returns a status (ok, warn, fail, info), a one-line finding,
// details and a fix. A probe changes nothing on the source: the checks that
// need to try something (creating a publication or an event trigger) do it
// inside a transaction that is rolled back.
package probe

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/config"
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

// Table is a user table of the source and what btfu will do with it.
type Table struct {
	Schema          string `json:"schema"`
	Name            string `json:"name"`
	Kind            string `json:"kind"`           // table, partitioned, partition
	Root            string `json:"root,omitempty"` // a partition's partition tree root, schema.name
	Unlogged        bool   `json:"unlogged,omitempty"`
	ReplicaIdentity string `json:"replica_identity"` // default, full, index, nothing
	HasPrimaryKey   bool   `json:"has_primary_key"`
	UsableIdentity  bool   `json:"usable_identity"`
	Generated       bool   `json:"generated_columns,omitempty"`
	Owned           bool   `json:"owned"` // the role owns it (may add it to a publication)
	Bytes           int64  `json:"bytes"`
	RowEstimate     int64  `json:"row_estimate"`
	// Decision: publish, exclude (config), set_full (config asks for
	// REPLICA IDENTITY FULL), undecided (no usable identity, no decision),
	// not_logged (unlogged: nothing to decode).
	Decision string `json:"decision"`
}

// QualifiedName is schema.name, unquoted.
func (t Table) QualifiedName() string { return t.Schema + "." + t.Name }

// Publication forms, from widest to narrowest.
const (
	FormAllTables      = "FOR ALL TABLES"
	FormTablesInSchema = "FOR TABLES IN SCHEMA"
	FormTableList      = "FOR TABLE list"
)

// Plan is what registration will create or validate on the source.
type Plan struct {
	Publication      string   `json:"publication"`
	PublicationForm  string   `json:"publication_form"`
	Schemas          []string `json:"schemas,omitempty"` // FOR TABLES IN SCHEMA
	Tables           []string `json:"tables"`            // every table whose changes are captured
	Excluded         []string `json:"excluded,omitempty"`
	SetReplicaFull   []string `json:"set_replica_identity_full,omitempty"`
	Undecided        []string `json:"undecided,omitempty"` // no usable replica identity and no decision
	Slot             string   `json:"slot"`
	ProtocolVersion  int      `json:"protocol_version"`
	Streaming        bool     `json:"streaming"`
	DDLCapture       bool     `json:"ddl_capture"`
	DDLObjects       []string `json:"ddl_objects,omitempty"`
	ViaPartitionRoot bool     `json:"publish_via_partition_root"`
}

// Report is the result of a probe.
type Report struct {
	Source           string    `json:"source"`
	Target           string    `json:"target"` // host:port/db, no credentials
	At               time.Time `json:"at"`
	ServerVersion    string    `json:"server_version"`
	ServerMajor      int       `json:"server_major"`
	SystemIdentifier string    `json:"system_identifier,omitempty"`
	Provider         string    `json:"provider"`
	Checks           []Check   `json:"checks"`
	Tables           []Table   `json:"tables"`
	Plan             Plan      `json:"plan"`
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
// be reached at all (a *ConnError); everything else is a check.
func Run(ctx context.Context, src *config.Source, opts Options) (*Report, error) {
	if opts.WALSample == 0 {
		opts.WALSample = time.Second
	}
	conn, err := Connect(ctx, src)
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
