package tui

import (
	"context"
	"fmt"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/restore"
)

// Local is the engine running in this process, as the TUI uses it.
type Local struct{ *engine.Engine }

// ProbeSource probes the source b describes, with the file's own
// defaults and validation.
func (l Local) ProbeSource(ctx context.Context, b config.SourceBlock) (*probe.Report, error) {
	return probeBlock(ctx, b)
}

// AddSource appends b to config.toml and reloads, which starts it.
func (l Local) AddSource(ctx context.Context, b config.SourceBlock) error {
	cfg, err := config.AppendSource(l.Config().Path, b)
	if err != nil {
		return err
	}
	return l.Reload(ctx, cfg)
}

// CheckTarget connects to the target and refuses the named source itself.
func (l Local) CheckTarget(ctx context.Context, name, dsn string) (restore.TargetInfo, error) {
	src, err := l.SourceRecord(ctx, name)
	if err != nil {
		return restore.TargetInfo{}, err
	}
	return restore.CheckTarget(ctx, dsn, src)
}

// probeBlock builds the source b describes through config.Parse (so
// defaults and validation are the file's own) and probes it.
func probeBlock(ctx context.Context, b config.SourceBlock) (*probe.Report, error) {
	cfg, err := config.Parse("form", []byte(b.Text()))
	if err != nil {
		return nil, err
	}
	if len(cfg.Sources) != 1 {
		return nil, fmt.Errorf("the form describes %d sources, want 1", len(cfg.Sources))
	}
	return probe.Run(ctx, &cfg.Sources[0], probe.Options{})
}
