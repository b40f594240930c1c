package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/restore"
)

// ErrSourceBlock marks a register form whose [[source]] block does not
// make one valid source (the message names the key and the fix).
var ErrSourceBlock = errors.New("the form's source")

// ErrReload marks an AddSource whose block was appended to config.toml
// but whose reload failed: the file changed, the engine did not.
var ErrReload = errors.New("reload failed")

// ProbeSource probes a source that is not configured yet (the register
// form), built through config.Parse so defaults and validation are the
// file's own. It changes nothing on the source.
func ProbeSource(ctx context.Context, b config.SourceBlock) (*probe.Report, error) {
	cfg, err := config.Parse("form", []byte(b.Text()))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSourceBlock, err)
	}
	if len(cfg.Sources) != 1 {
		return nil, fmt.Errorf("%w: the form describes %d sources, want 1", ErrSourceBlock, len(cfg.Sources))
	}
	return probe.Run(ctx, &cfg.Sources[0], probe.Options{})
}

// ProbeSource is the package's ProbeSource, for the engine's consumers.
func (e *Engine) ProbeSource(ctx context.Context, b config.SourceBlock) (*probe.Report, error) {
	return ProbeSource(ctx, b)
}

// AddSource appends b to this engine's config.toml (every existing byte
// kept) and reloads, which registers and starts it.
func (e *Engine) AddSource(ctx context.Context, b config.SourceBlock) error {
	path := e.Config().Path
	cfg, err := config.AppendSource(path, b)
	if err != nil {
		return err
	}
	if err := e.Reload(ctx, cfg); err != nil {
		return fmt.Errorf("%s appended to %s, but the %w: %w", b.Name, path, ErrReload, err)
	}
	return nil
}

// CheckTarget connects to a restore target and refuses the named source
// itself (the restore wizard, before planning).
func (e *Engine) CheckTarget(ctx context.Context, name, dsn string) (restore.TargetInfo, error) {
	src, err := e.SourceRecord(ctx, name)
	if err != nil {
		return restore.TargetInfo{}, err
	}
	return restore.CheckTarget(ctx, dsn, src)
}
