package cli

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/logging"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/store"
)

func restoreCommand() command {
	return command{
		name:    "restore",
		summary: "restore a source into an empty database, as it was at a time or LSN (or its latest stored state)",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			name := fs.String("source", "", "source name (may be omitted when there is only one)")
			targetDSN := fs.String("target", "", "connection string of the EMPTY database to restore into (never the source)")
			at := fs.String("time", "", "restore every transaction committed at or before this time, with a zone, e.g. '2026-11-23 14:05:00+00' or RFC 3339")
			lsn := fs.String("lsn", "", "restore every transaction ending at or before this LSN, e.g. 0/3000060")
			latest := fs.Bool("latest", false, "restore everything stored")
			clean := fs.Bool("clean", false, "allow a non-empty target: objects in the backup are dropped first")
			jobs := fs.Int("jobs", 1, "parallel pg_restore jobs (reserved)")
			dryRun := fs.Bool("dry-run", false, "print the plan and change nothing")
			yes := fs.Bool("yes", false, "do not ask for confirmation (required without a terminal)")
			return func(env *Env, path string, args []string) error {
				t, err := parseTarget(*at, *lsn, *latest)
				if err != nil {
					return &ExitError{Code: 2, Err: err}
				}
				if *targetDSN == "" && !*dryRun {
					return usageErr("--target DSN is required: the empty database to restore into")
				}
				st, err := openStored(env, path, *name, args)
				if err != nil {
					return err
				}
				defer st.meta.Close()
				cfg, meta, rec := st.cfg, st.meta, st.rec
				plan, err := restore.MakePlan(env.Ctx, meta, rec.ID, t)
				if err != nil {
					return err
				}
				printPlan(env.Stdout, plan)
				if *dryRun {
					return nil
				}
				if !*yes {
					if !isTerminal(env.Stdin) {
						return usageErr("no terminal to confirm on; pass --yes to restore into %s", redact.DSN(*targetDSN))
					}
					fmt.Fprintf(env.Stdout, "\nRestore into %s? Type 'restore' to go on: ", redact.DSN(*targetDSN))
					line, _ := bufio.NewReader(env.Stdin).ReadString('\n')
					if strings.TrimSpace(line) != "restore" {
						return errors.New("not restored: not confirmed")
					}
				}
				arts, err := engine.OpenArtifacts(env.Ctx, cfg.Storage)
				if err != nil {
					return err
				}
				job, _ := meta.StartJob(env.Ctx, store.Job{SourceID: rec.ID, Kind: "restore", StartedAt: time.Now(), Detail: t.String()})
				log := logging.New(cfg.Log, env.Stderr)
				sum, err := restore.Run(env.Ctx, meta, arts, rec.ID, plan, restore.Options{
					TargetDSN: *targetDSN, SourceSystemID: rec.SystemIdentifier, SourceDatabase: rec.Database, Clean: *clean, Jobs: *jobs, Log: log,
					Progress: progressPrinter(env, log),
				})
				if err != nil && env.Ctx.Err() != nil {
					err = fmt.Errorf("interrupted: the target is partial and must not be used; drop it and restore again (%w)", err)
				}
				status, errText := store.JobOK, ""
				if err != nil {
					status, errText = store.JobFailed, redact.String(err.Error())
				}
				detail := fmt.Sprintf("%s: %d transactions, %d rows, %d sequences", t, sum.Transactions, sum.Rows, sum.Sequences)
				_ = meta.FinishJob(env.Ctx, job.ID, status, detail, errText, time.Now())
				if err != nil {
					return fmt.Errorf("restore failed: %w", err)
				}
				fmt.Fprintf(env.Stdout, "\nRestored %s.\n  base backup  %s (consistent at %s)\n  replayed     %d transactions, %d rows\n  sequences    %d set\n  took         %s\n",
					t, sum.Base.ArtifactKey, sum.Base.ConsistentLSN, sum.Transactions, sum.Rows, sum.Sequences, sum.Took.Round(time.Millisecond))
				return nil
			}
		},
	}
}

// progressPrinter shows restore progress on stderr: one rewritten line in
// a terminal, JSON log lines otherwise.
func progressPrinter(env *Env, log *slog.Logger) func(restore.Progress) {
	tty := isTerminal(env.Stderr)
	return func(p restore.Progress) {
		pct, eta := 0.0, ""
		if p.TotalBytes > 0 {
			pct = 100 * float64(p.Bytes) / float64(p.TotalBytes)
			if p.Bytes > 0 && p.Phase == "replay" {
				rest := time.Duration(float64(p.Elapsed) * float64(p.TotalBytes-p.Bytes) / float64(p.Bytes))
				eta = rest.Round(time.Second).String()
			}
		}
		if !tty {
			log.Info("restore progress", "phase", p.Phase, "bytes", p.Bytes, "total_bytes", p.TotalBytes, "transactions", p.Transactions,
				"lsn", p.LastLSN.String(), "elapsed", p.Elapsed.Round(time.Millisecond).String(), "eta", eta)
			return
		}
		rate := 0.0
		if s := p.Elapsed.Seconds(); s > 0 {
			rate = float64(p.Transactions) / s
		}
		fmt.Fprintf(env.Stderr, "\r%-10s %5.1f%%  %s / %s  %d tx  %.0f tx/s  ETA %-8s", p.Phase, pct, probe.HumanBytes(p.Bytes), probe.HumanBytes(p.TotalBytes), p.Transactions, rate, eta)
		if p.Phase == "done" {
			fmt.Fprintln(env.Stderr)
		}
	}
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999 Z07:00",
	"2006-01-02 15:04:05.999999999 MST",
	"2006-01-02T15:04:05.999999999Z07",
}

// parseTime reads RFC 3339 and PostgreSQL's usual timestamptz forms; a
// time without a zone is refused.
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			if strings.HasSuffix(l, "MST") && t.Location().String() != "UTC" && !strings.HasSuffix(s, "UTC") {
				continue // an unknown abbreviation would be read as UTC silently
			}
			return t, nil
		}
	}
	for _, l := range []string{"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04"} {
		if _, err := time.Parse(l, s); err == nil {
			return time.Time{}, fmt.Errorf("--time %q has no time zone; add one, e.g. '%s+00' or '%sZ'", s, s, strings.Replace(s, " ", "T", 1))
		}
	}
	return time.Time{}, fmt.Errorf("--time %q is not a time; write it like '2026-11-23 14:05:00+00' or 2026-11-23T14:05:00Z", s)
}

func parseTarget(at, lsn string, latest bool) (restore.Target, error) {
	n := 0
	for _, set := range []bool{at != "", lsn != "", latest} {
		if set {
			n++
		}
	}
	if n != 1 {
		return restore.Target{}, errors.New("give exactly one of --time, --lsn or --latest")
	}
	switch {
	case latest:
		return restore.Target{Latest: true}, nil
	case lsn != "":
		l, err := pglogrepl.ParseLSN(lsn)
		if err != nil {
			return restore.Target{}, fmt.Errorf("--lsn %q is not an LSN; write it like 0/3000060", lsn)
		}
		return restore.Target{LSN: l}, nil
	}
	t, err := parseTime(at)
	return restore.Target{Time: t}, err
}

func printPlan(w io.Writer, p *restore.Plan) {
	fmt.Fprintf(w, "Restore plan: %s\n", p.Target)
	fmt.Fprintf(w, "  base backup  %s\n               consistent at %s, snapshot %s, %s\n", p.Base.ArtifactKey, p.Base.ConsistentLSN,
		p.Base.SnapshotTime.UTC().Format(time.RFC3339), probe.HumanBytes(p.Base.SizeBytes))
	fmt.Fprintf(w, "  segments     %d (%s), up to %d transactions to replay\n", len(p.Segments), probe.HumanBytes(p.SegmentBytes), p.Transactions)
	est := time.Duration(float64(p.Base.SizeBytes+p.SegmentBytes*8)/float64(20<<20)*float64(time.Second)) + 2*time.Second
	fmt.Fprintf(w, "  estimate     about %s\n", est.Round(time.Second))
	fmt.Fprintf(w, "  coverage     %s .. %s\n", p.Range.FromTime.UTC().Format(time.RFC3339), p.Range.ToTime.UTC().Format(time.RFC3339))
}
