package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/logging"
	"github.com/btfu/btfu/tui"
)

func runCommand() command {
	return command{
		name:    "run",
		summary: "run every configured source until interrupted: the TUI in a terminal, or headless with --no-tui",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			noTUI := fs.Bool("no-tui", false, "run headless: JSON logs on stderr, no terminal needed (tmux, systemd)")
			return func(env *Env, path string, args []string) error {
				if len(args) > 0 {
					return usageErr("unknown command %q; run 'btfu --help' for the list", args[0])
				}
				cfg, err := loadConfig(path)
				if err != nil {
					return err
				}
				if len(cfg.Sources) == 0 {
					return fmt.Errorf("%s has no [[source]]; add one with name and dsn (see config.toml.example)", path)
				}
				if *noTUI {
					log := logging.New(cfg.Log, env.Stderr)
					eng, err := engine.Open(env.Ctx, cfg, log)
					if err != nil {
						return err
					}
					defer eng.Close()
					go eng.WatchConfig(env.Ctx, hangups(env.Ctx))
					return eng.Run(env.Ctx)
				}
				if !isTerminal(env.Stdout) || !isTerminal(env.Stdin) {
					return errors.New("no terminal for the TUI; run 'btfu --no-tui' under tmux or systemd")
				}
				log, closeLog, err := logging.ToFile(cfg.Log)
				if err != nil {
					return err
				}
				defer closeLog()
				eng, err := engine.Open(env.Ctx, cfg, log)
				if err != nil {
					return err
				}
				defer eng.Close()
				// The engine runs beside the TUI and stops when it quits,
				// storing and acknowledging what it holds.
				ctx, stop := context.WithCancel(env.Ctx)
				go eng.WatchConfig(ctx, hangups(ctx))
				done := make(chan error, 1)
				go func() { done <- eng.Run(ctx) }()
				tuiErr := tui.Run(ctx, eng)
				stop()
				if err := <-done; err != nil {
					return err
				}
				return tuiErr
			}
		},
	}
}

// hangups delivers SIGHUP (reload config.toml) until ctx ends.
func hangups(ctx context.Context) <-chan os.Signal {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	context.AfterFunc(ctx, func() { signal.Stop(ch) })
	return ch
}

func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
