// Package cli parses btfu's command line and runs its commands. It holds
// no logic of its own beyond arguments, output and exit codes: the engine,
// stores and probe do the work.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/redact"
)

// Env is what a command may touch: its output streams and the process's
// context (cancelled on SIGINT/SIGTERM).
type Env struct {
	Ctx    context.Context
	Stdout io.Writer
	Stderr io.Writer
	Stdin  io.Reader
}

type command struct {
	name    string
	args    string // usage after the name
	summary string
	flags   func(fs *flag.FlagSet) func(env *Env, cfgPath string, args []string) error
}

// ExitError carries a specific exit code (e.g. a failed check) with a
// message already printed or to print.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

func usageErr(format string, args ...any) error {
	return &ExitError{Code: 2, Err: fmt.Errorf(format, args...)}
}

func commands() []command {
	return []command{
		runCommand(),
		attachCommand(),
		statusCommand(),
		probeCommand(),
		registerCommand(),
		unregisterCommand(),
		restoreCommand(),
		verifyCommand(),
		retentionCommand(),
		notifyCommand(),
		backupCommand(),
		drillCommand(), // drill.go
		pauseCommand(true),
		pauseCommand(false),
		configCommand(),
		versionCommand(),
		completionCommand(),
		helpCommand(),
	}
}

// Main runs btfu with args (without the program name) and returns the
// process exit code.
func Main(args []string, stdout, stderr io.Writer, stdin io.Reader) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &Env{Ctx: ctx, Stdout: stdout, Stderr: stderr, Stdin: stdin}
	err := dispatch(env, args)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	code := 1
	var ee *ExitError
	if errors.As(err, &ee) {
		code = ee.Code
		if ee.Err == nil {
			return code
		}
	}
	fmt.Fprintln(stderr, "btfu: "+redact.String(err.Error()))
	return code
}

func dispatch(env *Env, args []string) error {
	// Flags before the command: btfu [--config FILE] [--no-tui] [command].
	// With no command, btfu runs (the TUI, or headless with --no-tui).
	global := flag.NewFlagSet("btfu", flag.ContinueOnError)
	global.SetOutput(env.Stderr)
	cfgPath := global.String("config", "", "config file (default $BTFU_CONFIG or ./config.toml)")
	noTUI := global.Bool("no-tui", false, "run headless: JSON logs on stderr, no terminal needed")
	global.Usage = func() { printHelp(env.Stdout, global) }
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &ExitError{Code: 2}
	}
	rest := global.Args()
	name := "run"
	if len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	if name == "help" {
		return runHelp(env, global, rest)
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		fs := flag.NewFlagSet("btfu "+c.name, flag.ContinueOnError)
		fs.SetOutput(env.Stderr)
		cmdCfg := fs.String("config", "", "config file (default $BTFU_CONFIG or ./config.toml)")
		run := c.flags(fs)
		fs.Usage = func() { printCommandHelp(env.Stdout, c, fs) }
		if name == "run" {
			// --no-tui given before the (implicit) command counts too.
			if *noTUI {
				rest = append([]string{"--no-tui"}, rest...)
			}
		}
		positional, err := parseInterspersed(fs, rest)
		if err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return &ExitError{Code: 2}
		}
		path := *cmdCfg
		if path == "" {
			path = *cfgPath
		}
		return run(env, config.ResolvePath(path), positional)
	}
	return usageErr("unknown command %q; run 'btfu --help' for the list", name)
}

// parseInterspersed parses flags wherever they appear among the
// positional arguments: "config check --config x" works like
// "config --config x check".
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

func printHelp(w io.Writer, global *flag.FlagSet) {
	fmt.Fprint(w, `btfu (back-the-f-up): near point-in-time recovery for any PostgreSQL you can
reach with a connection string. It streams logical changes into stored
segments and takes base backups with pg_dump at the slot's snapshot.

Usage:
  btfu [--config FILE] [--no-tui]     run every configured source (TUI, or headless),
                                      or attach the TUI to the btfu running here
  btfu <command> [flags]
  btfu <command> --help               flags of one command

Commands:
`)
	cmds := commands()
	sort.SliceStable(cmds, func(i, j int) bool { return cmds[i].name == "run" && cmds[j].name != "run" })
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-28s %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	fmt.Fprint(w, "\nGlobal flags:\n")
	global.SetOutput(w)
	global.PrintDefaults()
	fmt.Fprint(w, "\nThe config file is TOML; config.toml.example documents every key.\n")
}

func printCommandHelp(w io.Writer, c command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: btfu %s\n\n%s\n\nFlags:\n", strings.TrimSpace(c.name+" [flags] "+c.args), c.summary)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// loadConfig reads the config file for commands that need it.
func loadConfig(path string) (*config.Config, error) {
	return config.Load(path)
}
