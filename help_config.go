package main

import (
	_ "embed"

	"github.com/btfu/btfu/cli"
)

// configExample is config.toml.example, which documents every key (the
// config package's tests hold it to that): `btfu help config` prints it
// key by key. It is embedded here because only this package's directory
// holds the file.
//
//go:embed config.toml.example
var configExample string

func init() { cli.ConfigExample = configExample }
