package cli

import (
	"flag"
	"fmt"
	"time"

	"github.com/btfu/btfu/notify"
	"github.com/btfu/btfu/redact"
)

func notifyCommand() command {
	return command{
		name:    "notify",
		args:    "test",
		summary: "notify test: send a test message to each [[notify.channel]] (or --channel NAME) and say per channel whether it arrived; exit 1 when one failed",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			channel := fs.String("channel", "", "only this channel")
			return func(env *Env, path string, args []string) error {
				if len(args) != 1 || args[0] != "test" {
					return usageErr("usage: btfu notify test [--channel NAME]")
				}
				cfg, err := loadConfig(path)
				if err != nil {
					return err
				}
				res, err := notify.SendTest(env.Ctx, cfg, *channel)
				if err != nil {
					return err
				}
				failed := 0
				for _, r := range res {
					if r.Err == nil {
						fmt.Fprintf(env.Stdout, "%s: ok (%s)\n", r.Channel, r.Duration.Round(time.Millisecond))
						continue
					}
					failed++
					fmt.Fprintf(env.Stdout, "%s: error: %s\n  hint: %s\n", r.Channel, redact.String(r.Err.Error()), r.Hint)
				}
				if failed > 0 {
					return &ExitError{Code: 1, Err: fmt.Errorf("%d of %d channel(s) failed", failed, len(res))}
				}
				return nil
			}
		},
	}
}
