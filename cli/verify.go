package cli

import (
	"flag"
	"fmt"
	"time"

	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/restore"
)

func verifyCommand() command {
	return command{
		name:    "verify",
		summary: "check every stored artifact of a source (checksums, readability, chain continuity, pg_restore --list) and show coverage; exits 1 on any problem",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			name := fs.String("source", "", "source name (may be omitted when there is only one)")
			return func(env *Env, path string, args []string) error {
				st, err := openStored(env, path, *name, args)
				if err != nil {
					return err
				}
				defer st.meta.Close()
				src, meta, rec := st.src, st.meta, st.rec
				arts, err := engine.OpenArtifacts(env.Ctx, st.cfg.Storage)
				if err != nil {
					return err
				}
				rep, err := restore.Verify(env.Ctx, meta, arts, rec.ID)
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "source %s: %d base backup(s), %d segment(s), %s read\n", src.Name, rep.BaseBackups, rep.Segments, probe.HumanBytes(rep.Bytes))
				for _, r := range rep.Coverage {
					fmt.Fprintf(env.Stdout, "restorable %s .. %s (LSN %s .. %s)\n", r.FromTime.UTC().Format(time.RFC3339), r.ToTime.UTC().Format(time.RFC3339), r.FromLSN, r.ToLSN)
				}
				for _, p := range rep.Problems {
					fmt.Fprintln(env.Stdout, "PROBLEM "+p)
				}
				if len(rep.Problems) > 0 {
					return &ExitError{Code: 1, Err: fmt.Errorf("%d problem(s) found", len(rep.Problems))}
				}
				fmt.Fprintln(env.Stdout, "all artifacts verified")
				return nil
			}
		},
	}
}
