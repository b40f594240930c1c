package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/internal/human"
)

func statusCommand() command {
	return command{
		name:    "status",
		summary: "show every source's state, flushed LSN, RPO, restorable coverage, last restore and last restore drill; live from the running btfu (with lag and throughput), else from the metadata",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			asJSON := fs.Bool("json", false, "print JSON instead of a table")
			return func(env *Env, path string, args []string) error {
				if len(args) > 0 {
					return usageErr("status takes no arguments, got %q", strings.Join(args, " "))
				}
				cfg, err := loadConfig(path)
				if err != nil {
					return err
				}
				st, live := liveStatus(env, cfg)
				if !live {
					meta, err := engine.OpenMetadata(env.Ctx, cfg.Metadata)
					if err != nil {
						return err
					}
					defer meta.Close()
					if st, err = engine.ReadStatus(env.Ctx, meta, cfg); err != nil {
						return err
					}
				}
				if *asJSON {
					enc := json.NewEncoder(env.Stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(st)
				}
				printStatus(env.Stdout, st, live)
				return nil
			}
		},
	}
}

// printStatus prints one line per source; live (from the running btfu)
// adds the lag behind the source and the throughput.
func printStatus(w io.Writer, st engine.Status, live bool) {
	if len(st.Sources) == 0 {
		fmt.Fprintln(w, "no sources configured; add a [[source]] with name and dsn to the config file")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if live {
		fmt.Fprintln(tw, "SOURCE\tSTATE\tFLUSHED LSN\tFLUSHED AT\tLAG\tRPO\tTHROUGHPUT\tBASES\tSEGMENTS\tRESTORABLE")
	} else {
		fmt.Fprintln(tw, "SOURCE\tSTATE\tFLUSHED LSN\tFLUSHED AT\tRPO\tBASES\tSEGMENTS\tRESTORABLE")
	}
	for _, s := range st.Sources {
		flushed := "-"
		if s.FlushedTime != nil {
			flushed = s.FlushedTime.UTC().Format(time.DateTime + "Z")
		}
		cov := "nothing yet"
		if len(s.Coverage) > 0 {
			var parts []string
			for _, r := range s.Coverage {
				parts = append(parts, r.FromTime.UTC().Format(time.DateTime)+" .. "+r.ToTime.UTC().Format(time.DateTime)+" UTC")
			}
			cov = strings.Join(parts, ", ")
		}
		rpo := "-"
		if s.RPOSeconds != nil {
			rpo = human.Age(time.Duration(*s.RPOSeconds * float64(time.Second)))
		}
		if live {
			lag := "-"
			if s.LagBytes != nil {
				lag = human.Bytes(*s.LagBytes)
			}
			rate := fmt.Sprintf("%.1f tx/s, %s/s", s.TxPerSec, human.Bytes(int64(s.BytesPerSec)))
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.Name, s.State, s.FlushedLSN, flushed, lag, rpo, rate, s.BaseBackups, s.Segments, cov)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.Name, s.State, s.FlushedLSN, flushed, rpo, s.BaseBackups, s.Segments, cov)
		}
		if s.Attention != "" {
			fmt.Fprintf(tw, "  attention:\t%s\n", s.Attention)
		} else if s.LastError != "" {
			fmt.Fprintf(tw, "  error:\t%s\n", s.LastError)
		}
		if r := s.LastRestore; r != nil {
			line := fmt.Sprintf("%s %s: %s", r.StartedAt.UTC().Format(time.DateTime+"Z"), r.Status, r.Detail)
			if r.Error != "" {
				line += " (" + r.Error + ")"
			}
			fmt.Fprintf(tw, "  last restore:\t%s\n", line)
		}
		drillStatusLines(tw, s, time.Now())
		if s.EncryptedTo > 0 {
			fmt.Fprintf(tw, "  encryption:\tnew artifacts encrypted with age to %d recipient(s)\n", s.EncryptedTo)
		}
	}
	tw.Flush()
}
