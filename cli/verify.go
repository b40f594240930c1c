package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/internal/human"
	"github.com/btfu/btfu/logging"
	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/sourcedb"
	"github.com/btfu/btfu/store/artifact"
)

func verifyCommand() command {
	return command{
		name:    "verify",
		summary: "check every stored artifact of a source (checksums, readability, chain continuity, pg_restore --list) and show coverage; exits 1 on any problem",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			name := sourceFlag(fs)
			restoreTest := fs.String("restore-test", "", "also restore the latest state into this EMPTY scratch database and compare row counts per table with the source")
			identity := identityFlag(fs)
			return func(env *Env, path string, args []string) error {
				st, err := openStored(env, path, *name, args)
				if err != nil {
					return err
				}
				defer st.meta.Close()
				src, meta, rec := st.src, st.meta, st.rec
				arts, err := engine.OpenArtifacts(env.Ctx, withIdentity(st.cfg.Storage, *identity))
				if err != nil {
					return err
				}
				rep, err := restore.Verify(env.Ctx, meta, arts, rec.ID)
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "source %s: %d base backup(s), %d segment(s), %s read\n", src.Name, rep.BaseBackups, rep.Segments, human.Bytes(rep.Bytes))
				for _, r := range rep.Coverage {
					fmt.Fprintf(env.Stdout, "restorable %s .. %s (LSN %s .. %s)\n", r.FromTime.UTC().Format(time.RFC3339), r.ToTime.UTC().Format(time.RFC3339), r.FromLSN, r.ToLSN)
				}
				if rep.Encrypted > 0 {
					fmt.Fprintf(env.Stdout, "encrypted (age): %d artifact(s)", rep.Encrypted)
					if rep.Unchecked > 0 {
						fmt.Fprintf(env.Stdout, "; checksums verified, content of %d NOT checked: no identity to decrypt them (%s)", rep.Unchecked, engine.IdentityHint)
					}
					fmt.Fprintln(env.Stdout)
				}
				for _, p := range rep.Problems {
					fmt.Fprintln(env.Stdout, "PROBLEM "+p)
				}
				if len(rep.Problems) > 0 {
					return &ExitError{Code: 1, Err: fmt.Errorf("%d problem(s) found", len(rep.Problems))}
				}
				if rep.Unchecked > 0 {
					fmt.Fprintln(env.Stdout, "all checksums verified")
				} else {
					fmt.Fprintln(env.Stdout, "all artifacts verified")
				}
				if *restoreTest == "" {
					return nil
				}
				return restoreTestRun(env, st, arts, *restoreTest)
			}
		},
	}
}

// restoreTestRun restores the latest stored state into dsn and compares
// row counts per published table with the source now.
func restoreTestRun(env *Env, st *stored, arts artifact.Store, dsn string) error {
	plan, err := restore.MakePlan(env.Ctx, st.meta, st.rec.ID, restore.Target{Latest: true})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "restore test: restoring the latest stored state (up to %s) into %s\n", plan.Range.ToLSN, redact.DSN(dsn))
	log := logging.New(st.cfg.Log, env.Stderr)
	// Owners do not matter to a row count, and the scratch database's
	// cluster need not hold the source's roles.
	sum, err := engine.Restore(env.Ctx, st.meta, arts, st.rec, plan, restore.Options{TargetDSN: dsn, NoOwner: true, Log: log})
	if err != nil {
		return &ExitError{Code: 1, Err: fmt.Errorf("restore test failed: %w", err)}
	}
	fmt.Fprintf(env.Stdout, "restore test: %d transactions, %d rows replayed in %s\n", sum.Transactions, sum.Rows, sum.Took.Round(time.Millisecond))
	srcConn, err := sourcedb.Connect(env.Ctx, st.src)
	if err != nil {
		return err
	}
	defer srcConn.Close(context.WithoutCancel(env.Ctx))
	tgtConn, err := pgx.Connect(env.Ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to the scratch database: %s", redact.String(err.Error()))
	}
	defer tgtConn.Close(context.WithoutCancel(env.Ctx))
	counts, err := restore.CompareCounts(env.Ctx, srcConn, tgtConn, st.src.Publication)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tSOURCE NOW\tRESTORED\t")
	bad := 0
	for _, c := range counts {
		mark := "ok"
		restored := fmt.Sprint(c.Target)
		if c.Target < 0 {
			restored, mark = "missing", "DIFFERS"
			bad++
		} else if c.Target != c.Source {
			mark = "DIFFERS"
			bad++
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", c.Table, c.Source, restored, mark)
	}
	tw.Flush()
	if bad > 0 {
		return &ExitError{Code: 1, Err: fmt.Errorf("restore test: %d of %d table(s) differ from the source (on a busy source, changes made after %s explain a difference; run it again when the source is quiet)", bad, len(counts), plan.Range.ToLSN)}
	}
	fmt.Fprintf(env.Stdout, "restore test passed: %d table(s) match the source\n", len(counts))
	return nil
}

// identityFlag is --identity: an age identity file for this run, instead
// of the configured one (a key kept offline, brought for a restore).
func identityFlag(fs *flag.FlagSet) *string {
	return fs.String("identity", "", "age identity file (the private key age-keygen wrote) that decrypts encrypted artifacts, instead of storage.age_identity_file")
}

// withIdentity is st with the identity file given on the command line,
// if any.
func withIdentity(st config.Storage, file string) config.Storage {
	if file != "" {
		st.AgeIdentityFile, st.AgeIdentity = file, ""
	}
	return st
}
