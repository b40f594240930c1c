package cli

import (
	"flag"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

func completionCommand() command {
	return command{
		name:    "completion",
		args:    "bash|zsh|fish",
		summary: "print the completion script of bash, zsh or fish, e.g. source <(btfu completion bash)",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			return func(env *Env, _ string, args []string) error {
				if len(args) != 1 {
					return usageErr("completion needs one shell: bash, zsh or fish")
				}
				write, ok := map[string]func(io.Writer, []complCommand, []flagInfo){
					"bash": writeBash, "zsh": writeZsh, "fish": writeFish,
				}[args[0]]
				if !ok {
					return usageErr("no completion for shell %q: bash, zsh or fish", args[0])
				}
				cmds, global := completionModel()
				write(env.Stdout, cmds, global)
				return nil
			}
		},
	}
}

// complCommand is what completion knows of a command: its words (the
// fixed arguments it takes, e.g. config's show and check) and flags.
type complCommand struct {
	name, summary string
	words         []string
	wordDesc      map[string]string
	flags         []flagInfo
}

var wordAlternatives = regexp.MustCompile(`^[a-z][a-z-]*(\|[a-z][a-z-]*)+$`)

// completionModel reads the command table, so the scripts follow every
// command and flag btfu has.
func completionModel() ([]complCommand, []flagInfo) {
	var cmds []complCommand
	for _, c := range commands() {
		cc := complCommand{name: c.name, summary: c.summary, flags: commandFlags(c)}
		if wordAlternatives.MatchString(c.args) {
			cc.words = strings.Split(c.args, "|")
		}
		cmds = append(cmds, cc)
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	for i, c := range cmds {
		if c.name != "help" {
			continue
		}
		cmds[i].wordDesc = map[string]string{}
		for _, t := range helpTopics() {
			cmds[i].words = append(cmds[i].words, t.name)
			cmds[i].wordDesc[t.name] = t.summary
		}
		for _, o := range cmds {
			if o.name != "help" && !contains(cmds[i].words, o.name) {
				cmds[i].words = append(cmds[i].words, o.name)
				cmds[i].wordDesc[o.name] = short(o.summary)
			}
		}
	}
	global := []flagInfo{
		{name: "config", usage: "config file (default $BTFU_CONFIG or ./config.toml)", takesValue: true},
		{name: "help", usage: "show help"},
		{name: "no-tui", usage: "run headless: JSON logs on stderr, no terminal needed"},
	}
	return cmds, global
}

// short is the first clause of a summary or usage, for a menu: up to 60
// characters, cut at a word.
func short(s string) string {
	for _, sep := range []string{"; ", ": ", " (", ", e.g."} {
		if i := strings.Index(s, sep); i > 0 {
			s = s[:i]
		}
	}
	if len(s) > 60 {
		s = s[:strings.LastIndex(s[:60], " ")] + "…"
	}
	return s
}

// valueFlags are the flags, of any command, that take a value; config's
// value is a file.
func valueFlags(cmds []complCommand) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range cmds {
		for _, f := range c.flags {
			if f.takesValue && f.name != "config" && !seen[f.name] {
				seen[f.name] = true
				out = append(out, f.name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// both gives -name and --name: Go's flag package takes either.
func both(names []string) string {
	var out []string
	for _, n := range names {
		out = append(out, "-"+n, "--"+n)
	}
	return strings.Join(out, "|")
}

func flagWords(flags []flagInfo) []string {
	var out []string
	for _, f := range flags {
		out = append(out, "--"+f.name)
	}
	if !contains(out, "--help") {
		out = append(out, "--help")
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func writeBash(w io.Writer, cmds []complCommand, global []flagInfo) {
	fmt.Fprint(w, `# bash completion for btfu, generated from its command table by
# 'btfu completion bash'. Load it in this shell:  source <(btfu completion bash)
# or for every shell:  btfu completion bash > /etc/bash_completion.d/btfu
_btfu() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local cmd= i
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		-config|--config) ((i++)) ;;
		-*) ;;
		*) cmd=${COMP_WORDS[i]}; break ;;
		esac
	done
	case $prev in
	-config|--config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
`)
	if v := valueFlags(cmds); len(v) > 0 {
		fmt.Fprintf(w, "\t%s) COMPREPLY=(); return ;;\n", both(v))
	}
	fmt.Fprint(w, "\tesac\n\tlocal words flags\n\tcase $cmd in\n")
	var top []string
	for _, c := range cmds {
		top = append(top, c.name)
	}
	fmt.Fprintf(w, "\t'') words=%s flags=%s ;;\n", sq(strings.Join(top, " ")), sq(strings.Join(flagWords(global), " ")))
	for _, c := range cmds {
		fmt.Fprintf(w, "\t%s) words=%s flags=%s ;;\n", c.name, sq(strings.Join(c.words, " ")), sq(strings.Join(flagWords(c.flags), " ")))
	}
	fmt.Fprint(w, `	esac
	# Flags once a word starts with -, else the command's words.
	case $cur in
	-*) COMPREPLY=($(compgen -W "$flags" -- "$cur")) ;;
	*) COMPREPLY=($(compgen -W "$words" -- "$cur")) ;;
	esac
}
complete -F _btfu btfu
`)
}

// zq quotes an entry of a zsh _describe array: "name:description".
func zq(name, desc string) string {
	return sq(strings.ReplaceAll(name, ":", `\:`) + ":" + desc)
}

func writeZsh(w io.Writer, cmds []complCommand, global []flagInfo) {
	fmt.Fprint(w, `#compdef btfu
# zsh completion for btfu, generated from its command table by
# 'btfu completion zsh'. Load it in this shell:  source <(btfu completion zsh)
# or for every shell: save it as _btfu in a directory of $fpath.
_btfu() {
	local -a words_ opts
	local cmd i
	for ((i = 2; i < CURRENT; i++)); do
		case ${words[i]} in
		-config|--config) ((i++)) ;;
		-*) ;;
		*) cmd=${words[i]}; break ;;
		esac
	done
	case ${words[CURRENT-1]} in
	-config|--config) _files; return ;;
`)
	if v := valueFlags(cmds); len(v) > 0 {
		fmt.Fprintf(w, "\t%s) _message 'value'; return ;;\n", both(v))
	}
	fmt.Fprint(w, "\tesac\n\tcase $cmd in\n")
	describe := func(words []string, descs map[string]string, flags []flagInfo) {
		var ws, fs []string
		for _, x := range words {
			if descs[x] == "" {
				ws = append(ws, sq(x))
			} else {
				ws = append(ws, zq(x, descs[x]))
			}
		}
		for _, f := range flags {
			fs = append(fs, zq("--"+f.name, short(f.usage)))
		}
		fmt.Fprintf(w, "\t\twords_=(%s)\n\t\topts=(%s)\n", strings.Join(ws, " "), strings.Join(fs, " "))
		fmt.Fprint(w, "\t\t_describe -t commands 'btfu' words_\n\t\t_describe -t options 'option' opts\n\t\t;;\n")
	}
	descs := map[string]string{}
	var top []string
	for _, c := range cmds {
		top = append(top, c.name)
		descs[c.name] = short(c.summary)
	}
	fmt.Fprint(w, "\t'')\n")
	describe(top, descs, global)
	for _, c := range cmds {
		fmt.Fprintf(w, "\t%s)\n", c.name)
		describe(c.words, c.wordDesc, append(c.flags, flagInfo{name: "help", usage: "show the command's flags"}))
	}
	fmt.Fprint(w, `	esac
}
if [[ $funcstack[1] == _btfu ]]; then
	_btfu "$@"
else
	compdef _btfu btfu
fi
`)
}

func writeFish(w io.Writer, cmds []complCommand, global []flagInfo) {
	fmt.Fprint(w, `# fish completion for btfu, generated from its command table by
# 'btfu completion fish'. Load it in this shell:  btfu completion fish | source
# or for every shell:  btfu completion fish > ~/.config/fish/completions/btfu.fish
complete -c btfu -f
`)
	for _, c := range cmds {
		fmt.Fprintf(w, "complete -c btfu -n __fish_use_subcommand -a %s -d %s\n", c.name, sq(short(c.summary)))
	}
	flagLine := func(cond string, f flagInfo) {
		kind := ""
		switch {
		case f.name == "config":
			kind = " -r -F"
		case f.takesValue:
			kind = " -x"
		}
		fmt.Fprintf(w, "complete -c btfu -n %s -l %s%s -d %s\n", sq(cond), f.name, kind, sq(short(f.usage)))
	}
	for _, f := range global {
		flagLine("__fish_use_subcommand", f)
	}
	for _, c := range cmds {
		cond := "__fish_seen_subcommand_from " + c.name
		// Only the first word after the command: config show, not config
		// show check.
		wordCond := sq(cond + "; and not __fish_seen_subcommand_from " + strings.Join(c.words, " "))
		for _, x := range c.words {
			desc := ""
			if d := c.wordDesc[x]; d != "" {
				desc = " -d " + sq(d)
			}
			fmt.Fprintf(w, "complete -c btfu -n %s -a %s%s\n", wordCond, x, desc)
		}
		for _, f := range c.flags {
			flagLine(cond, f)
		}
	}
}
