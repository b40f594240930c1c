package cli

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/btfu/btfu/api"
	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/internal/human"
	"github.com/btfu/btfu/sourcedb"
	"github.com/btfu/btfu/store"
)

func backupCommand() command {
	return command{
		name:    "backup",
		summary: "take a base backup of a source now; asks the running btfu and waits until the backup is stored (Ctrl-C cancels it)",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			name := sourceFlag(fs)
			return func(env *Env, path string, args []string) error {
				src, cfg, err := pickSource(path, *name, args)
				if err != nil {
					return err
				}
				c, err := running(cfg)
				if errors.Is(err, api.ErrNotRunning) {
					return fmt.Errorf("%w: a base backup needs the running engine; start it with 'btfu --no-tui' (or the TUI) and run this again", err)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Stderr, "taking a base backup of %s (btfu on %s)...\n", src.Name, c.Where())
				var b api.BaseBackup
				if err := c.Do(env.Ctx, http.MethodPost, "/v1/sources/"+src.Name+"/backup", &b); err != nil {
					if env.Ctx.Err() != nil {
						return fmt.Errorf("interrupted: the base backup of %s was cancelled", src.Name)
					}
					return err
				}
				fmt.Fprintf(env.Stdout, "base backup %s of %s complete: consistent at %s, %s in %s\n", b.Key, src.Name, b.ConsistentLSN,
					human.Bytes(b.Bytes), time.Duration(b.DurationSeconds*float64(time.Second)).Round(time.Second))
				return nil
			}
		},
	}
}

func pauseCommand(pause bool) command {
	verb, summary := "pause", "stop streaming a source (its slot is kept up to pause_wal_budget); asks the running btfu, or records it for its next start"
	if !pause {
		verb, summary = "resume", "resume streaming a paused source; asks the running btfu, or records it for its next start"
	}
	return command{
		name:    verb,
		summary: summary,
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			name := sourceFlag(fs)
			return func(env *Env, path string, args []string) error {
				src, cfg, err := pickSource(path, *name, args)
				if err != nil {
					return err
				}
				if !pause {
					if err := engine.ResumeAllowed(path, src); err != nil {
						return err
					}
				}
				c, err := running(cfg)
				if err == nil {
					var p api.Paused
					if err := c.Do(env.Ctx, http.MethodPost, "/v1/sources/"+src.Name+"/"+verb, &p); err != nil {
						return err
					}
					fmt.Fprintf(env.Stdout, "source %s: %sd\n", src.Name, verb)
					return nil
				}
				if !errors.Is(err, api.ErrNotRunning) {
					return err
				}
				return recordPause(env, cfg, src, pause, verb, err)
			}
		},
	}
}

// recordPause records a pause or resume in the metadata store, where the
// engine reads it when it starts; why says that no btfu answered.
func recordPause(env *Env, cfg *config.Config, src *config.Source, pause bool, verb string, why error) error {
	meta, err := engine.OpenMetadata(env.Ctx, cfg.Metadata)
	if err != nil {
		return err
	}
	defer meta.Close()
	rec, changed, err := engine.RecordPaused(env.Ctx, meta, src, pause)
	switch {
	case err != nil:
		return err
	case rec.ID == 0:
		fmt.Fprintf(env.Stdout, "%v; source %s has never run and is not paused\n", why, src.Name)
	case !changed:
		fmt.Fprintf(env.Stdout, "%v; source %s is already %sd\n", why, src.Name, verb)
	default:
		fmt.Fprintf(env.Stdout, "%v; source %s will be %sd when it starts\n", why, src.Name, verb)
	}
	return nil
}

// tablesJoined records the tables that registration added to the
// publication of src, through the engine, and sees that the base backup
// that makes them restorable follows: the running btfu takes it now; a
// btfu not running takes it when it starts (the records say it is due).
func tablesJoined(env *Env, cfg *config.Config, src *config.Source, meta store.Store, g *sourcedb.Registration) error {
	if len(g.AddedTables) == 0 {
		return nil
	}
	names := strings.Join(g.AddedTables, ", ")
	recorded, err := engine.RecordRegistration(env.Ctx, meta, src.Name, g)
	if err != nil {
		return fmt.Errorf("table(s) %s joined publication %s at %s, but that could not be recorded (%w): a restore from an older base backup would hold them without their changes from before; take a base backup now with 'btfu backup --source %s'",
			names, src.Publication, g.AddedLSN, err, src.Name)
	}
	if !recorded {
		fmt.Fprintf(env.Stdout, "table(s) %s joined publication %s; source %s has no base backup yet, so its first one holds them\n", names, src.Publication, src.Name)
		return nil
	}
	fmt.Fprintf(env.Stdout, "table(s) %s joined publication %s at %s: restores from older base backups leave them out and say so; a base backup follows so that restores hold them\n", names, src.Publication, g.AddedLSN)
	c, err := running(cfg)
	if errors.Is(err, api.ErrNotRunning) {
		fmt.Fprintf(env.Stdout, "%v; it takes that base backup when it starts source %s\n", err, src.Name)
		return nil
	}
	later := fmt.Sprintf("btfu takes it the next time it starts source %s (btfu restarted, the source resumed or its config changed), or run 'btfu backup --source %s' once it streams", src.Name, src.Name)
	if err != nil {
		return fmt.Errorf("no base backup yet (%w); %s", err, later)
	}
	var st engine.Status
	if err := c.Do(env.Ctx, http.MethodGet, "/v1/sources", &st); err != nil {
		return fmt.Errorf("no base backup yet (%w); %s", err, later)
	}
	for _, ss := range st.Sources {
		if ss.Name == src.Name && ss.State != store.StateStreaming && ss.State != store.StateBackingUp {
			fmt.Fprintf(env.Stdout, "source %s is %s in the running btfu: %s\n", src.Name, ss.State, later)
			return nil
		}
	}
	fmt.Fprintf(env.Stderr, "taking a base backup of %s (btfu on %s)...\n", src.Name, c.Where())
	var b api.BaseBackup
	if err := c.Do(env.Ctx, http.MethodPost, "/v1/sources/"+src.Name+"/backup", &b); err != nil {
		return fmt.Errorf("the running btfu did not take the base backup (%w); %s", err, later)
	}
	fmt.Fprintf(env.Stdout, "base backup %s of %s complete: consistent at %s; restores from there on hold %s\n", b.Key, src.Name, b.ConsistentLSN, names)
	return nil
}

// running finds the btfu running with cfg to ask it. Without one the
// error wraps api.ErrNotRunning and says why none answered (notRunning).
func running(cfg *config.Config) (*api.Client, error) {
	c, err := api.Connect(cfg)
	if errors.Is(err, api.ErrNotRunning) {
		return nil, notRunningError(notRunning(cfg))
	}
	return c, err
}

// notRunningError is api.ErrNotRunning told for one config.
type notRunningError string

func (e notRunningError) Error() string { return string(e) }
func (e notRunningError) Unwrap() error { return api.ErrNotRunning }

// notRunning says that no btfu answered, or that none could have.
func notRunning(cfg *config.Config) string {
	if cfg.SocketPath() == "" && cfg.API.Listen == "" {
		return "btfu's control API is off ([api] socket = \"off\"), so a running btfu cannot be asked"
	}
	return "btfu is not running"
}

// liveStatus asks a running btfu for its status; without one it says why
// the stored metadata is shown instead.
func liveStatus(env *Env, cfg *config.Config) (engine.Status, bool) {
	c, err := running(cfg)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%v; showing stored metadata\n", err)
		return engine.Status{}, false
	}
	var st engine.Status
	if err := c.Do(env.Ctx, http.MethodGet, "/v1/sources", &st); err != nil {
		fmt.Fprintf(env.Stderr, "the running btfu on %s did not answer (%v); showing stored metadata\n", c.Where(), err)
		return engine.Status{}, false
	}
	return st, true
}
