package cli

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/btfu/btfu/api"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/probe"
)

func backupCommand() command {
	return command{
		name:    "backup",
		summary: "take a base backup of a source now (asks the running btfu)",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			name := fs.String("source", "", "source name (may be omitted when there is only one)")
			return func(env *Env, path string, args []string) error {
				src, err := pickSource(path, *name, args)
				if err != nil {
					return err
				}
				cfg, err := loadConfig(path)
				if err != nil {
					return err
				}
				c, err := api.Dial(cfg.SocketPath())
				if errors.Is(err, api.ErrNotRunning) {
					return errors.New("btfu is not running: a base backup needs the running engine; start it with 'btfu --no-tui' (or the TUI) and run this again")
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Stderr, "taking a base backup of %s...\n", src.Name)
				var b api.BaseBackup
				if err := c.Do(env.Ctx, http.MethodPost, "/v1/sources/"+src.Name+"/backup", &b); err != nil {
					return fmt.Errorf("base backup of %s: %w", src.Name, err)
				}
				fmt.Fprintf(env.Stdout, "base backup %s complete: consistent at %s, %s\n", b.Key, b.ConsistentLSN, probe.HumanBytes(b.Bytes))
				return nil
			}
		},
	}
}

func pauseCommand(pause bool) command {
	verb, summary := "pause", "stop streaming a source; its slot is kept up to pause_wal_budget (asks the running btfu, or records it for the next start)"
	if !pause {
		verb, summary = "resume", "resume streaming a paused source (asks the running btfu, or records it for the next start)"
	}
	return command{
		name:    verb,
		summary: summary,
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			name := fs.String("source", "", "source name (may be omitted when there is only one)")
			return func(env *Env, path string, args []string) error {
				src, err := pickSource(path, *name, args)
				if err != nil {
					return err
				}
				cfg, err := loadConfig(path)
				if err != nil {
					return err
				}
				c, err := api.Dial(cfg.SocketPath())
				if err == nil {
					if err := c.Do(env.Ctx, http.MethodPost, "/v1/sources/"+src.Name+"/"+verb, nil); err != nil {
						return err
					}
					fmt.Fprintf(env.Stdout, "source %s: %sd\n", src.Name, verb)
					return nil
				}
				if !pause && src.Paused {
					return fmt.Errorf("source %s is paused in %s (paused = true); set paused = false there to resume it", src.Name, path)
				}
				// No btfu running: record it for the next start.
				st, err := openStored(env, path, src.Name, nil)
				if err != nil {
					return err
				}
				defer st.meta.Close()
				if err := st.meta.SetSourcePaused(env.Ctx, st.rec.ID, pause); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "btfu is not running; source %s will be %sd when it starts\n", src.Name, verb)
				return nil
			}
		},
	}
}

// liveStatus asks a running btfu for its status.
func liveStatus(env *Env, socket string) (engine.Status, bool) {
	c, err := api.Dial(socket)
	if err != nil {
		return engine.Status{}, false
	}
	var st engine.Status
	if err := c.Do(env.Ctx, http.MethodGet, "/v1/sources", &st); err != nil {
		fmt.Fprintf(env.Stderr, "the running btfu did not answer (%v); showing stored metadata\n", err)
		return engine.Status{}, false
	}
	return st, true
}

func humanAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.0fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%.0fm", d.Minutes())
	case d < 48*time.Hour:
		return fmt.Sprintf("%.1fh", d.Hours())
	}
	return fmt.Sprintf("%.0fd", d.Hours()/24)
}
