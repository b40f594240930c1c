package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/btfu/btfu/api"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/logging"
	"github.com/btfu/btfu/tui"
)

func runCommand() command {
	return command{
		name:    "run",
		summary: "run every configured source until interrupted: the TUI in a terminal (attached to the btfu running on this metadata, if any), or headless with --no-tui",
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
				if !*noTUI && (!isTerminal(env.Stdout) || !isTerminal(env.Stdin)) {
					return errors.New("no terminal for the TUI; run 'btfu --no-tui' under tmux or systemd")
				}
				// A btfu already running on this metadata (its socket
				// answers): the TUI attaches to it instead.
				if !*noTUI {
					c, err := api.Dial(cfg.SocketPath())
					if err == nil {
						return attach(env, c)
					}
					if !errors.Is(err, api.ErrNotRunning) {
						return err
					}
				}
				if len(cfg.Sources) == 0 {
					return fmt.Errorf("%s has no [[source]]; add one with name and dsn (see config.toml.example)", path)
				}
				// The control API's socket first: a live btfu on it means
				// this metadata is in use.
				listeners, err := api.Listeners(cfg.SocketPath(), cfg.API.Listen)
				if err != nil {
					return err
				}
				serving := false
				defer func() {
					if !serving {
						for _, l := range listeners {
							l.Close()
						}
					}
				}()
				var log *slog.Logger
				if *noTUI {
					log = logging.New(cfg.Log, env.Stderr)
				} else {
					var closeLog func() error
					log, closeLog, err = logging.ToFile(cfg.Log)
					if err != nil {
						return err
					}
					defer closeLog()
				}
				eng, err := engine.Open(env.Ctx, cfg, log)
				if err != nil {
					return err
				}
				defer eng.Close()
				// The engine stops with the TUI (or on SIGINT/SIGTERM),
				// storing and acknowledging what it holds.
				ctx, stop := context.WithCancel(env.Ctx)
				defer stop()
				hup := hangups(ctx)
				if *noTUI {
					go eng.WatchConfig(ctx, hup)
				} else {
					// SIGHUP to a process in a terminal means the terminal
					// went away (an SSH connection dropped, tmux killed):
					// stop as on SIGTERM. config.toml is still reloaded
					// when it changes.
					go eng.WatchConfig(ctx, nil)
					go func() {
						select {
						case <-hup:
							log.Info("SIGHUP: the terminal went away; stopping")
							stop()
						case <-ctx.Done():
						}
					}()
				}
				// The API starts before the engine runs, so /metrics counts
				// every error event; it stops with the engine.
				apiDone := api.New(eng, api.Options{Token: cfg.API.Token, Version: Version, Log: log}).Start(ctx, listeners)
				serving = true
				for _, l := range listeners {
					log.Info("control API listening", "addr", l.Addr().String(), "network", l.Addr().Network())
				}
				done := make(chan error, 1)
				go func() { done <- eng.Run(ctx) }()
				var tuiErr error
				if *noTUI {
					<-ctx.Done()
				} else {
					tuiErr = tui.Run(ctx, tui.Local{Engine: eng})
					if errors.Is(tuiErr, tui.ErrTerminalLost) {
						log.Info("the terminal went away; stopping")
						tuiErr = nil
					}
				}
				stop()
				runErr := <-done
				if err := <-apiDone; err != nil {
					log.Warn("control API", "err", err)
				}
				if runErr != nil {
					return runErr
				}
				return tuiErr
			}
		},
	}
}

// hangups delivers SIGHUP until ctx ends: reload config.toml headless,
// stop under the TUI.
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
