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

	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/internal/human"
	"github.com/btfu/btfu/logging"
	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/restore"
)

func restoreCommand() command {
	return command{
		name:    "restore",
		summary: "restore a source into an empty database, as it was at a time or LSN (or its latest stored state)",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			name := sourceFlag(fs)
			targetDSN := fs.String("target", "", "connection string of the EMPTY database to restore into (never the source); default: the source's restore_target")
			at := fs.String("time", "", "restore every transaction committed at or before this time, with a zone, e.g. '2026-11-23 14:05:00+00' or RFC 3339, or relative to now: '5m ago'")
			lsn := fs.String("lsn", "", "restore every transaction ending at or before this LSN, e.g. 0/3000060")
			latest := fs.Bool("latest", false, "restore everything stored")
			clean := fs.Bool("clean", false, "allow a non-empty target: objects in the backup are dropped first")
			baseKey := fs.String("base", "", "restore from this base backup (its key as the plan and verify print it) instead of the newest fitting one")
			jobs := fs.Int("jobs", 0, "parallel pg_restore jobs (the base backup is copied to $TMPDIR first when above 1); 0: one per core, up to 8, for a base backup of 256MiB or more when $TMPDIR has room for the copy, else 1")
			noOwner := fs.Bool("no-owner", false, "restore without owners: objects belong to the restoring role (for a target without the source's roles)")
			onDDLError := fs.String("on-ddl-error", "stop", "when captured DDL fails on the target: stop (name its LSN and text) or skip (go on; the summary lists it)")
			dryRun := fs.Bool("dry-run", false, "print the plan and change nothing")
			yes := fs.Bool("yes", false, "do not ask for confirmation (required without a terminal)")
			identity := identityFlag(fs)
			return func(env *Env, path string, args []string) error {
				t, err := restore.ParseTarget(*at, *lsn, *latest)
				if err != nil {
					return &ExitError{Code: 2, Err: err}
				}
				ddlPolicy, err := restore.ParseDDLErrorPolicy(*onDDLError)
				if err != nil {
					return &ExitError{Code: 2, Err: err}
				}
				st, err := openStored(env, path, *name, args)
				if err != nil {
					return err
				}
				defer st.meta.Close()
				if *targetDSN == "" {
					*targetDSN = st.src.RestoreTarget
				}
				if *targetDSN == "" && !*dryRun {
					return usageErr("--target DSN is required: the empty database to restore into (or set restore_target on source %s)", st.src.Name)
				}
				cfg, meta, rec := st.cfg, st.meta, st.rec
				plan, err := restore.MakePlanFrom(env.Ctx, meta, rec.ID, t, *baseKey)
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
				arts, err := engine.OpenArtifacts(env.Ctx, withIdentity(cfg.Storage, *identity))
				if err != nil {
					return err
				}
				log := logging.New(cfg.Log, env.Stderr)
				sum, err := engine.Restore(env.Ctx, meta, arts, rec, plan, restore.Options{
					TargetDSN: *targetDSN, Clean: *clean, Jobs: *jobs, OnDDLError: ddlPolicy, NoOwner: *noOwner, Log: log, Progress: progressPrinter(env, log),
				})
				notifyRestore(cfg, st.src.Name, sum, err, log)
				if err != nil {
					return fmt.Errorf("restore failed: %w", err)
				}
				fmt.Fprintf(env.Stdout, "\nRestored %s.\n  base backup  %s (consistent at %s; pg_restore with %d job(s))\n  replayed     %d transactions, %d rows\n  sequences    %d set\n  took         %s\n",
					t, sum.Base.ArtifactKey, sum.Base.ConsistentLSN, sum.Jobs, sum.Transactions, sum.Rows, sum.Sequences, sum.Took.Round(time.Millisecond))
				if sum.Rows > 0 {
					// How replay applied the rows: why a restore was as fast
					// or as slow as it was.
					fmt.Fprintf(env.Stdout, "  set-based    %d of the %d rows, in %d batch(es)", sum.NetRows, sum.Rows, sum.NetBatches)
					if sum.NetFallbacks > 0 {
						fmt.Fprintf(env.Stdout, "; %d batch(es) applied again one by one after a set-based statement failed", sum.NetFallbacks)
					}
					fmt.Fprintln(env.Stdout)
				}
				if sum.LargeObjects > 0 {
					fmt.Fprintf(env.Stdout, "  large objects %d, as of the base backup (%s): logical decoding does not carry their changes\n", sum.LargeObjects, sum.Base.SnapshotTime.UTC().Format(time.RFC3339))
				}
				if sum.OwnerChanges > 0 {
					fmt.Fprintf(env.Stdout, "  owners       %d statement(s) about owners left out (ALTER … OWNER TO, or the role part of CREATE SCHEMA … AUTHORIZATION and DROP OWNED BY): --no-owner, or a role the target lacks\n", sum.OwnerChanges)
				}
				for _, n := range sum.Notes {
					fmt.Fprintf(env.Stdout, "  note         %s\n", n)
				}
				if sum.TempDDL > 0 {
					fmt.Fprintf(env.Stdout, "  temporary    %d DDL statement(s) on temporary objects not replayed (they lived in their session only)\n", sum.TempDDL)
				}
				for _, l := range sum.LeftOut {
					fmt.Fprintf(env.Stdout, "  LEFT OUT     %s\n", l)
				}
				skipped, notReproduced := 0, 0
				for _, d := range sum.SkippedDDL {
					if d.NotReproduced {
						notReproduced++
						fmt.Fprintf(env.Stdout, "  NOT REPRODUCED  %s\n", d)
						continue
					}
					skipped++
					fmt.Fprintf(env.Stdout, "  SKIPPED DDL  %s\n", d)
				}
				var short []string
				if len(sum.LeftOut) > 0 {
					short = append(short, fmt.Sprintf("%d table(s) are not at the requested point (LEFT OUT above)", len(sum.LeftOut)))
				}
				if skipped > 0 {
					short = append(short, fmt.Sprintf("%d DDL statement(s) failed on the target and were skipped (SKIPPED DDL above)", skipped))
				}
				if notReproduced > 0 {
					short = append(short, fmt.Sprintf("%d DDL command(s) run inside functions or DO blocks could not be rebuilt (NOT REPRODUCED above)", notReproduced))
				}
				if len(short) > 0 {
					return &ExitError{Code: 1, Err: fmt.Errorf("restored, but %s", strings.Join(short, "; "))}
				}
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
		fmt.Fprintf(env.Stderr, "\r%-10s %5.1f%%  %s / %s  %d tx  %.0f tx/s  ETA %-8s", p.Phase, pct, human.Bytes(p.Bytes), human.Bytes(p.TotalBytes), p.Transactions, rate, eta)
		if p.Phase == "done" {
			fmt.Fprintln(env.Stderr)
		}
	}
}

func printPlan(w io.Writer, p *restore.Plan) {
	fmt.Fprintf(w, "Restore plan: %s\n", p.Target)
	fmt.Fprintf(w, "  base backup  %s\n               consistent at %s, snapshot %s, %s\n", p.Base.ArtifactKey, p.Base.ConsistentLSN,
		p.Base.SnapshotTime.UTC().Format(time.RFC3339), human.Bytes(p.Base.SizeBytes))
	fmt.Fprintf(w, "  segments     %d (%s), up to %d transactions to replay\n", len(p.Segments), human.Bytes(p.SegmentBytes), p.Transactions)
	est := time.Duration(float64(p.Base.SizeBytes+p.SegmentBytes*8)/float64(20<<20)*float64(time.Second)) + 2*time.Second
	fmt.Fprintf(w, "  estimate     about %s\n", est.Round(time.Second))
	fmt.Fprintf(w, "  coverage     %s .. %s\n", p.Range.FromTime.UTC().Format(time.RFC3339), p.Range.ToTime.UTC().Format(time.RFC3339))
	for _, c := range p.LeftOut() {
		fmt.Fprintf(w, "  LEFT OUT     %s\n", p.Describe(c))
	}
}
