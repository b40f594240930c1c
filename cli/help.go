package cli

import (
	"flag"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

// ConfigExample is config.toml.example, which documents every key (the
// config package's tests hold it to that). The btfu binary embeds it
// (main package); `btfu help config` is read from it, so the help and the
// example never differ.
var ConfigExample string

// helpTopic is a `btfu help TOPIC` page that is not a command's flags.
type helpTopic struct {
	name, summary string
	write         func(w io.Writer) error
}

func helpTopics() []helpTopic {
	return []helpTopic{
		{"config", "every config.toml key: its default and meaning", writeConfigHelp},
		{"exit-codes", "what btfu's exit codes mean, command by command", writeExitCodes},
	}
}

func helpCommand() command {
	return command{
		name:    "help",
		args:    "[COMMAND|TOPIC]",
		summary: "this list, a command's flags, or a topic: config (every config.toml key with its meaning), exit-codes",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			return func(env *Env, _ string, args []string) error {
				return runHelp(env, nil, args)
			}
		},
	}
}

// runHelp serves `btfu help [COMMAND|TOPIC]`. global is the flag set of
// the global flags, for the overview.
func runHelp(env *Env, global *flag.FlagSet, args []string) error {
	if len(args) == 0 {
		if global == nil {
			return dispatch(env, []string{"--help"})
		}
		printHelp(env.Stdout, global)
		return nil
	}
	if len(args) > 1 {
		return usageErr("help takes one command or topic; run 'btfu help' for the list")
	}
	if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		c := helpCommand()
		fs := flag.NewFlagSet("btfu help", flag.ContinueOnError)
		fs.String("config", "", "config file (default $BTFU_CONFIG or ./config.toml)")
		printCommandHelp(env.Stdout, c, fs)
		fmt.Fprintln(env.Stdout, "\nTopics:")
		for _, t := range helpTopics() {
			fmt.Fprintf(env.Stdout, "  %-12s %s\n", t.name, t.summary)
		}
		return nil
	}
	for _, t := range helpTopics() {
		if t.name == args[0] {
			return t.write(env.Stdout)
		}
	}
	for _, c := range commands() {
		if c.name == args[0] && c.name != "help" {
			return dispatch(env, []string{c.name, "--help"})
		}
	}
	var names []string
	for _, t := range helpTopics() {
		names = append(names, t.name)
	}
	return usageErr("no command or help topic %q; topics: %s; commands: 'btfu --help'", args[0], strings.Join(names, ", "))
}

// configKey is one key as config.toml.example documents it.
type configKey struct {
	name, value string
	meaning     []string
}

// configSection is a table of config.toml with its keys.
type configSection struct {
	header string // "[metadata]", "[[source]]"
	about  []string
	keys   []*configKey
}

var (
	sectionLine = regexp.MustCompile(`^(\[\[?[a-z0-9_.]+\]\]?)\s*(?:#\s?(.*))?$`)
	// "# key = value   # meaning" (a default) or "key = value  # meaning".
	keyLine = regexp.MustCompile(`^(?:# )?([a-z_0-9]+) = (.*?)(?:\s+#\s?(.*))?$`)
	// "#      #   more of the meaning above"
	continuedLine = regexp.MustCompile(`^#\s+#\s?(.*)$`)
)

// parseConfigExample reads the sections and keys of config.toml.example:
// comment lines before a table or before its first key describe the
// table; a key's meaning is its trailing comment and the indented comment
// lines under it.
func parseConfigExample(text string) (intro []string, sections []*configSection) {
	var pending []string
	var sec *configSection
	var last *configKey
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, " \t")
		switch {
		case line == "":
			if sec == nil && len(pending) > 0 {
				// A paragraph before the first table: the file's intro,
				// unless the table follows it directly.
				intro, pending = append(append(intro, pending...), ""), nil
			}
			last = nil
		case sectionLine.MatchString(line):
			m := sectionLine.FindStringSubmatch(line)
			sec = &configSection{header: m[1], about: pending}
			if m[2] != "" {
				sec.about = append(sec.about, m[2])
			}
			pending, last = nil, nil
			sections = append(sections, sec)
		case last != nil && continuedLine.MatchString(line):
			last.meaning = append(last.meaning, continuedLine.FindStringSubmatch(line)[1])
		case keyLine.MatchString(line) && sec != nil:
			m := keyLine.FindStringSubmatch(line)
			last = &configKey{name: m[1], value: m[2]}
			if m[3] != "" {
				last.meaning = []string{m[3]}
			}
			if len(sec.keys) == 0 {
				sec.about, pending = append(sec.about, pending...), nil
			}
			sec.keys = append(sec.keys, last)
		case strings.HasPrefix(line, "#"):
			pending = append(pending, strings.TrimSpace(strings.TrimPrefix(line, "#")))
			last = nil
		}
	}
	return intro, sections
}

// meaningColumn is where meanings start, as in config.toml.example.
const meaningColumn = 31

func writeConfigHelp(w io.Writer) error {
	if ConfigExample == "" {
		return fmt.Errorf("this btfu was built without config.toml.example; see that file in btfu's source")
	}
	intro, sections := parseConfigExample(ConfigExample)
	fmt.Fprint(w, "config.toml: every key with its default and meaning (from config.toml.example).\n\n")
	fmt.Fprintln(w, strings.TrimSpace(strings.Join(intro, "\n")))
	pad := strings.Repeat(" ", meaningColumn)
	for _, s := range sections {
		fmt.Fprintf(w, "\n%s\n", s.header)
		for _, l := range s.about {
			fmt.Fprintf(w, "  %s\n", l)
		}
		if len(s.about) > 0 {
			fmt.Fprintln(w)
		}
		for _, k := range s.keys {
			kv := "  " + k.name + " = " + k.value
			if len(k.meaning) == 0 {
				fmt.Fprintln(w, kv)
				continue
			}
			if len(kv) >= meaningColumn {
				kv += "\n" + pad
			} else {
				kv += pad[len(kv):]
			}
			fmt.Fprintf(w, "%s%s\n", kv, k.meaning[0])
			for _, l := range k.meaning[1:] {
				fmt.Fprintf(w, "%s%s\n", pad, l)
			}
		}
	}
	return nil
}

func writeExitCodes(w io.Writer) error {
	_, err := io.WriteString(w, `btfu's exit codes:

  0  It did what was asked.
     btfu (run): stopped by SIGINT, SIGTERM, q in the TUI, or the TUI's
       terminal going away (SIGHUP, a hung-up TTY), after storing and
       acknowledging what it held.
     btfu attached to a running btfu, attach: the user quit (the engine
       runs on), or the terminal went away.
     restore: the target holds exactly the transactions up to the target
       time or LSN. --dry-run: the plan is possible.
     probe: every check passed. verify: every artifact is sound (and the
       restore test matched). drill: the restore drill passed. status, backup, pause, resume, register,
       unregister, retention, config, version, completion, help: done.
  1  It failed, or found a problem; the message (or the report above it)
     says which.
     probe: a check failed. register: a check failed, nothing created.
     verify: a bad artifact, a gap, or a failed restore test.
     drill: the drill failed (a table differs, the restore or the source
       failed, the stream did not reach its LSN) or was refused (no
       drill_target, the source's server, a drill already running).
     restore: refused (target not empty, outside coverage, missing roles),
       failed or interrupted (the target is partial and must not be used),
       or finished with captured DDL skipped (--on-ddl-error=skip).
     retention: the plan was refused or artifacts could not be deleted.
     attach: no btfu answers on the control socket (nor on [api] listen).
     Any command: the config is invalid, a source or the metadata cannot
       be reached, another btfu runs on the same metadata (btfu --no-tui;
       btfu in a terminal attaches to it instead).
  2  Usage: an unknown command or flag, missing or malformed arguments
     (restore without --time, --lsn or --latest, or without a target; a
     time without a zone; several sources configured and no --source), or
     a confirmation asked for without a terminal (add --yes).

A process killed by a signal it does not handle (SIGKILL) has no exit
code of its own; shells report 128 + the signal's number.
`)
	return err
}

// flagInfo describes one flag of a command, for help and completion.
type flagInfo struct {
	name, usage string
	takesValue  bool
}

// commandFlags lists the flags of c, --config included, sorted by name.
func commandFlags(c command) []flagInfo {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.String("config", "", "config file (default $BTFU_CONFIG or ./config.toml)")
	c.flags(fs)
	var out []flagInfo
	fs.VisitAll(func(f *flag.Flag) {
		b, ok := f.Value.(interface{ IsBoolFlag() bool })
		out = append(out, flagInfo{name: f.Name, usage: f.Usage, takesValue: !(ok && b.IsBoolFlag())})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
