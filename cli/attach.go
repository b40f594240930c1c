package cli

import (
	"errors"
	"flag"
	"fmt"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/btfu/btfu/api"
	"github.com/btfu/btfu/tui"
)

// The TUI an attached btfu shows drives the engine over the control API.
var _ tui.Engine = (*api.RemoteEngine)(nil)
var _ tui.Attached = (*api.RemoteEngine)(nil)

func attachCommand() command {
	return command{
		name:    "attach",
		summary: "open the TUI on the btfu already running on this metadata (btfu --no-tui, systemd); quitting leaves it running",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			return func(env *Env, path string, args []string) error {
				if len(args) > 0 {
					return usageErr("attach takes no arguments; run 'btfu attach --help'")
				}
				cfg, err := loadConfig(path)
				if err != nil {
					return err
				}
				c, err := running(cfg)
				if errors.Is(err, api.ErrNotRunning) {
					where := cfg.SocketPath()
					if abs, err := filepath.Abs(where); err == nil {
						where = abs
					}
					if cfg.API.Listen != "" {
						where += " nor on " + cfg.API.Listen
					}
					return fmt.Errorf("no btfu answers on %s: start one with 'btfu --no-tui --config %s' (or its systemd service), or run 'btfu' to run the engine in this terminal", where, path)
				}
				if err != nil {
					return err
				}
				if !isTerminal(env.Stdout) || !isTerminal(env.Stdin) {
					return errors.New("no terminal for the TUI; use 'btfu status' to read a running btfu without one")
				}
				return attach(env, c)
			}
		},
	}
}

// attach shows the TUI over the engine c talks to, until the user quits
// or the terminal goes away. The engine keeps running either way.
func attach(env *Env, c *api.Client) error {
	eng, err := api.Attach(env.Ctx, c)
	if err != nil {
		return err
	}
	// SIGHUP (the terminal went away) ends the TUI cleanly; the engine
	// is not ours to stop.
	ctx, stop := signal.NotifyContext(env.Ctx, syscall.SIGHUP)
	defer stop()
	err = tui.Run(ctx, eng)
	if errors.Is(err, tui.ErrTerminalLost) {
		return nil
	}
	return err
}
