package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/sourcedb"
	"github.com/btfu/btfu/store"
)

func probeCommand() command {
	return command{
		name:    "probe",
		summary: "check whether logical-tier recovery will work on a source and show what btfu would create (changes nothing); exits 1 when a check fails",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			name := sourceFlag(fs)
			asJSON := fs.Bool("json", false, "print the report as JSON")
			return func(env *Env, path string, args []string) error {
				src, _, err := pickSource(path, *name, args)
				if err != nil {
					return err
				}
				r, err := probe.Run(env.Ctx, src, probe.Options{})
				if err != nil {
					return err
				}
				if *asJSON {
					enc := json.NewEncoder(env.Stdout)
					enc.SetIndent("", "  ")
					if err := enc.Encode(r); err != nil {
						return err
					}
				} else {
					printReport(env.Stdout, r)
				}
				if r.Failed() {
					return &ExitError{Code: 1}
				}
				return nil
			}
		},
	}
}

func registerCommand() command {
	return command{
		name:    "register",
		summary: "probe a source, show the plan, and create the publication and DDL-capture objects it announces (the slot comes with the first base backup); tables it adds to a backed-up source's publication get a base backup",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			name := sourceFlag(fs)
			yes := fs.Bool("yes", false, "do not ask for confirmation (required without a terminal)")
			return func(env *Env, path string, args []string) error {
				src, cfg, err := pickSource(path, *name, args)
				if err != nil {
					return err
				}
				r, err := probe.Run(env.Ctx, src, probe.Options{})
				if err != nil {
					return err
				}
				printReport(env.Stdout, r)
				if r.Failed() {
					return &ExitError{Code: 1, Err: fmt.Errorf("not registered: fix the failed checks above and run it again")}
				}
				if !*yes {
					if !isTerminal(env.Stdin) {
						return usageErr("no terminal to confirm on; pass --yes to register %s", src.Name)
					}
					fmt.Fprintf(env.Stdout, "\nCreate the objects above on %s? [y/N] ", src.Describe())
					line, _ := bufio.NewReader(env.Stdin).ReadString('\n')
					if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
						return errors.New("not registered: not confirmed")
					}
				}
				// Opened before the source changes: tables that join the
				// publication of a source with backups are recorded there.
				meta, err := engine.OpenMetadata(env.Ctx, cfg.Metadata)
				if err != nil {
					return fmt.Errorf("not registered: %w", err)
				}
				defer meta.Close()
				g, err := sourcedb.Register(env.Ctx, src, &r.Plan, r.Tables)
				if err != nil {
					return err
				}
				for _, s := range g.Created {
					fmt.Fprintf(env.Stdout, "created  %s\n", s)
				}
				for _, s := range g.Altered {
					fmt.Fprintf(env.Stdout, "altered  %s\n", s)
				}
				for _, s := range g.Adopted {
					fmt.Fprintf(env.Stdout, "adopted  %s\n", s)
				}
				if !g.Changed() {
					fmt.Fprintf(env.Stdout, "source %s was already registered; nothing changed\n", src.Name)
				}
				return tablesJoined(env, cfg, src, meta, g)
			}
		},
	}
}

// stored is a configured source with its metadata record, for commands
// that read what was stored (restore, verify).
type stored struct {
	cfg  *config.Config
	src  *config.Source
	meta store.Store
	rec  store.Source
}

// openStored loads the config, picks the source and opens the metadata
// store; the caller closes s.meta.
func openStored(env *Env, path, name string, args []string) (*stored, error) {
	src, cfg, err := pickSource(path, name, args)
	if err != nil {
		return nil, err
	}
	meta, err := engine.OpenMetadata(env.Ctx, cfg.Metadata)
	if err != nil {
		return nil, err
	}
	rec, err := meta.GetSource(env.Ctx, src.Name)
	if err != nil {
		meta.Close()
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("source %s has no backups yet: run btfu first", src.Name)
		}
		return nil, err
	}
	return &stored{cfg: cfg, src: src, meta: meta, rec: rec}, nil
}

// sourceFlag is --source, which pickSource reads.
func sourceFlag(fs *flag.FlagSet) *string {
	return fs.String("source", "", "source name from the config (may be omitted when there is only one)")
}

// pickSource loads the config at path and finds the source named by
// --source, or the only one.
func pickSource(path, name string, args []string) (*config.Source, *config.Config, error) {
	if len(args) > 0 {
		return nil, nil, usageErr("unexpected argument %q; name the source with --source", args[0])
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	if name == "" {
		if len(cfg.Sources) == 1 {
			return &cfg.Sources[0], cfg, nil
		}
		var names []string
		for _, s := range cfg.Sources {
			names = append(names, s.Name)
		}
		if len(names) == 0 {
			return nil, nil, fmt.Errorf("%s has no [[source]]; add one with name and dsn", path)
		}
		return nil, nil, usageErr("several sources configured (%s); choose one with --source NAME", strings.Join(names, ", "))
	}
	src, err := cfg.Source(name)
	return src, cfg, err
}

func printReport(w io.Writer, r *probe.Report) {
	fmt.Fprintf(w, "Probe of source %s (%s): PostgreSQL %s, %s\n\n", r.Source, r.Target, orUnknown(r.ServerVersion), r.Provider)
	for _, c := range r.Checks {
		status := strings.ToUpper(string(c.Status))
		if c.Status == probe.OK || c.Status == probe.Info {
			status = string(c.Status)
		}
		fmt.Fprintf(w, "%-5s %-21s %s\n", status, c.ID, c.Finding)
		for i, d := range c.Details {
			if i == 10 && len(c.Details) > 11 {
				fmt.Fprintf(w, "%28s… %d more (see --json)\n", "", len(c.Details)-10)
				break
			}
			fmt.Fprintf(w, "%28s%s\n", "", d)
		}
		if c.Fix != "" && c.Status != probe.OK {
			fmt.Fprintf(w, "%28sfix: %s\n", "", c.Fix)
		}
	}
	pl := r.Plan
	fmt.Fprintf(w, "\nPlan on %s:\n", r.Target)
	if pl.PublicationForm != "" {
		form := pl.PublicationForm
		if len(pl.Schemas) > 0 {
			form += " " + strings.Join(pl.Schemas, ", ")
		}
		fmt.Fprintf(w, "  publication %s %s, %d table(s), publish_via_partition_root = %v\n", pl.Publication, form, len(pl.Tables), pl.ViaPartitionRoot)
	}
	if pl.Slot != "" {
		fmt.Fprintf(w, "  slot %s: pgoutput protocol %d%s, created with its exported snapshot by the first base backup\n", pl.Slot, pl.ProtocolVersion, map[bool]string{true: " with streaming", false: ""}[pl.Streaming])
	}
	if pl.DDLCapture {
		fmt.Fprintf(w, "  DDL capture: %s\n", strings.Join(pl.DDLObjects, ", "))
	} else {
		fmt.Fprintf(w, "  DDL capture: none (schema changes derived from relation messages and schema snapshots)\n")
	}
	if len(pl.SetReplicaFull) > 0 {
		fmt.Fprintf(w, "  ALTER TABLE … REPLICA IDENTITY FULL: %s\n", strings.Join(pl.SetReplicaFull, ", "))
	}
	if len(pl.Excluded) > 0 {
		fmt.Fprintf(w, "  not protected (excluded): %s\n", strings.Join(pl.Excluded, ", "))
	}
	if len(pl.Undecided) > 0 {
		fmt.Fprintf(w, "  waiting for a decision (exclude_tables or replica_identity_full): %s\n", strings.Join(pl.Undecided, ", "))
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
