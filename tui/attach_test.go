package tui

import (
	"context"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/restore"
)

// The register form's and the wizard's engine calls.

func (f *fakeEngine) ProbeSource(_ context.Context, b config.SourceBlock) (*probe.Report, error) {
	f.calls = append(f.calls, "probe "+b.Name)
	return f.Probe(context.Background(), b.Name)
}
func (f *fakeEngine) AddSource(_ context.Context, b config.SourceBlock) error {
	f.calls = append(f.calls, "add "+b.Name)
	return nil
}
func (f *fakeEngine) CheckTarget(_ context.Context, name, dsn string) (restore.TargetInfo, error) {
	f.calls = append(f.calls, "check "+name)
	return restore.TargetInfo{Database: "drill"}, nil
}
