package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/btfu/btfu/api"
	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/drill"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/internal/human"
	"github.com/btfu/btfu/logging"
	"github.com/btfu/btfu/store"
)

func drillCommand() command {
	return command{
		name: "drill",
		summary: "run a restore drill now: hash every published table at a fresh snapshot, restore to exactly that LSN into a scratch database on drill_target, compare, drop it; " +
			"asks the running btfu, else streams the source in-process meanwhile",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			name := sourceFlag(fs)
			asJSON := fs.Bool("json", false, "print the drill's record as JSON")
			return func(env *Env, path string, args []string) error {
				src, cfg, err := pickSource(path, *name, args)
				if err != nil {
					return err
				}
				if src.DrillTarget == "" {
					return fmt.Errorf("source %s has no drill_target; set drill_target in %s to a server where drills may create a scratch database (never the source's), e.g. drill_target = \"postgres://btfu@scratch.example.com:5432/postgres\"", src.Name, path)
				}
				var out api.Drill
				c, err := running(cfg)
				switch {
				case err == nil:
					fmt.Fprintf(env.Stderr, "restore drill of %s (btfu on %s)...\n", src.Name, c.Where())
					if err := c.Do(env.Ctx, http.MethodPost, "/v1/sources/"+src.Name+"/drill", &out); err != nil {
						if env.Ctx.Err() != nil {
							return fmt.Errorf("interrupted: the drill of %s was cancelled", src.Name)
						}
						return err
					}
				case errors.Is(err, api.ErrNotRunning):
					if out, err = drillInProcess(env, cfg, src); err != nil {
						return err
					}
				default:
					return err
				}
				if *asJSON {
					enc := json.NewEncoder(env.Stdout)
					enc.SetIndent("", "  ")
					if err := enc.Encode(out); err != nil {
						return err
					}
				} else {
					printDrill(env.Stdout, out)
				}
				if out.Status != store.DrillPassed {
					return &ExitError{Code: 1, Err: fmt.Errorf("restore drill of %s failed (%s): %s", src.Name, out.Category, out.Error)}
				}
				return nil
			}
		},
	}
}

// drillInProcess runs the engine here for the drill: the stream must
// reach the drill's LSN. It holds the control socket meanwhile, so no
// other btfu starts on this metadata, and answers there (btfu status).
func drillInProcess(env *Env, cfg *config.Config, src *config.Source) (api.Drill, error) {
	if cfg.SocketPath() == "" && cfg.API.Listen == "" {
		return api.Drill{}, fmt.Errorf("%s, so btfu cannot tell whether another btfu streams this source; run the drill from the running btfu's machine with the API on, or start btfu with the API on", notRunning(cfg))
	}
	listeners, err := api.Listeners(cfg.SocketPath(), cfg.API.Listen)
	if err != nil {
		return api.Drill{}, err
	}
	serving := false
	defer func() {
		if !serving {
			for _, l := range listeners {
				l.Close()
			}
		}
	}()
	log, closeLog, err := logging.ToFile(cfg.Log)
	if err != nil {
		return api.Drill{}, err
	}
	defer closeLog()
	eng, err := engine.Open(env.Ctx, cfg, log)
	if err != nil {
		return api.Drill{}, err
	}
	defer eng.Close()
	ctx, stop := context.WithCancel(env.Ctx)
	defer stop()
	apiDone := api.New(eng, api.Options{Token: cfg.API.Token, Log: log}).Start(ctx, listeners)
	serving = true
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	fmt.Fprintf(env.Stderr, "btfu is not running: running it here (every source streams, log in %s) until the drill of %s ends...\n", cfg.Log.File, src.Name)
	d, derr := eng.Drill(ctx, src.Name, "manual")
	stop()
	if err := <-done; err != nil {
		log.Warn("engine", "err", err)
	}
	<-apiDone
	if d.ID == 0 {
		if env.Ctx.Err() != nil {
			return api.Drill{}, fmt.Errorf("interrupted: the drill of %s was cancelled", src.Name)
		}
		return api.Drill{}, derr
	}
	return api.Drill{Source: src.Name, DrillInfo: engine.NewDrillInfo(d)}, nil
}

// printDrill prints a finished drill: result, phases, sizes, each table.
func printDrill(w io.Writer, d api.Drill) {
	if d.Status == store.DrillPassed {
		fmt.Fprintf(w, "restore drill of %s PASSED at LSN %s: %d table(s) restored exactly", d.Source, d.LSN, d.Equal)
	} else {
		fmt.Fprintf(w, "restore drill of %s FAILED at LSN %s (%s): %s", d.Source, d.LSN, d.Category, d.Error)
	}
	if d.LeftOut > 0 {
		fmt.Fprintf(w, "; %d LEFT OUT (not backed up, not compared)", d.LeftOut)
	}
	fmt.Fprintln(w)
	if d.Hint != "" {
		fmt.Fprintf(w, "hint: %s\n", d.Hint)
	}
	if rto := d.RTOSeconds; rto > 0 {
		fmt.Fprintf(w, "recovery time (RTO, the restore phase): %s from base backup %s\n", secs(rto), d.BaseKey)
	}
	var phases []string
	for _, p := range []string{drill.PhaseSnapshot, drill.PhaseHashSource, drill.PhaseWaitCoverage, drill.PhaseRestore, drill.PhaseHashRestore} {
		if s, ok := d.PhaseSeconds[p]; ok {
			phases = append(phases, p+" "+secs(s))
		}
	}
	if len(phases) > 0 {
		fmt.Fprintf(w, "phases: %s\n", strings.Join(phases, ", "))
	}
	if d.SourceBytes > 0 || d.ArtifactBytes > 0 {
		fmt.Fprintf(w, "sizes: %s of tables hashed on the source, %s of base backup and segments read, %s restored\n",
			human.Bytes(d.SourceBytes), human.Bytes(d.ArtifactBytes), human.Bytes(d.RestoredBytes))
	}
	if len(d.Tables) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tVERDICT\tSOURCE ROWS\tRESTORED ROWS\tWHY")
	for _, t := range d.Tables {
		rows, restored := fmt.Sprint(t.SourceRows), fmt.Sprint(t.RestoredRows)
		if t.Verdict == store.VerdictLeftOut {
			rows, restored = "-", "-"
		}
		verdict := strings.ToUpper(strings.ReplaceAll(t.Verdict, "_", " "))
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Table, verdict, rows, restored, t.Reason)
	}
	tw.Flush()
}

func secs(s float64) string {
	d := time.Duration(s * float64(time.Second))
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// drillStatusLines are status's lines about the last and next drill.
func drillStatusLines(w io.Writer, s engine.SourceStatus, now time.Time) {
	if d := s.LastDrill; d != nil {
		line := d.Line(now)
		if d.Error != "" {
			line += ": " + d.Error
		}
		fmt.Fprintf(w, "  last drill:\t%s\n", line)
		if d.Hint != "" {
			fmt.Fprintf(w, "  drill hint:\t%s\n", d.Hint)
		}
	}
	if s.NextDrill != nil {
		fmt.Fprintf(w, "  next drill:\t%s\n", s.NextDrill.UTC().Format(time.DateTime+"Z"))
	}
}
