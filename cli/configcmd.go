package cli

import (
	"flag"
	"fmt"
)

func configCommand() command {
	return command{
		name:    "config",
		args:    "show|check",
		summary: "show the effective configuration (defaults filled in, secrets masked), or check it",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			return func(env *Env, path string, args []string) error {
				if len(args) != 1 || (args[0] != "show" && args[0] != "check") {
					return usageErr("config needs one of: show, check (e.g. btfu config check --config %s)", path)
				}
				cfg, err := loadConfig(path)
				if err != nil {
					return err
				}
				if args[0] == "check" {
					fmt.Fprintf(env.Stdout, "%s is valid: %d source(s), metadata %s, storage %s\n", path, len(cfg.Sources), cfg.Metadata.Driver, cfg.Storage.Kind)
					return nil
				}
				out, err := cfg.Show()
				if err != nil {
					return err
				}
				fmt.Fprint(env.Stdout, out)
				return nil
			}
		},
	}
}
