// Command btfu ("back-the-f-up") gives any PostgreSQL reachable by a
// connection string logical-tier, near point-in-time recovery: base backups
// with pg_dump at a replication slot's snapshot, continuous pgoutput
// streaming into stored segments, and restores to a time or LSN.
//
// Run `btfu --help` for the commands; README.md for the quick start.
package main

import (
	"os"

	"github.com/btfu/btfu/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr, os.Stdin))
}
