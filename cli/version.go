package cli

import (
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/btfu/btfu/pgbin"
)

// Set at build time: -ldflags "-X github.com/btfu/btfu/cli.Version=... -X github.com/btfu/btfu/cli.Commit=...".
var (
	Version = "dev"
	Commit  = ""
)

func commit() string {
	if Commit != "" {
		return Commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

func versionCommand() command {
	return command{
		name:    "version",
		summary: "print btfu's version, commit, Go version and the pg_dump/pg_restore found",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			return func(env *Env, _ string, _ []string) error {
				w := env.Stdout
				fmt.Fprintf(w, "btfu %s\ncommit %s\n%s %s/%s\n", Version, commit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
				for _, name := range []string{"pg_dump", "pg_restore"} {
					progs := pgbin.All(env.Ctx, name)
					if len(progs) == 0 {
						fmt.Fprintf(w, "%s: not found (install the PostgreSQL client matching your server's major version, or set %s)\n", name, pgbin.EnvBinDir)
					}
					for _, p := range progs {
						fmt.Fprintf(w, "%s %s %s\n", name, p.Version, p.Path)
					}
				}
				return nil
			}
		},
	}
}
