package engine

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/notify/kind"
)

// Reload applies a new configuration while the engine runs: sources added
// start, sources removed stop (their records and backups stay), sources
// whose settings changed restart with the new ones (a stopping source
// stores and acknowledges what it holds first). Encryption settings
// (recipients, identity) apply to the next artifacts; other [metadata],
// [storage], [engine], [api] and [log] changes need a restart; they are
// reported, not applied.
func (e *Engine) Reload(ctx context.Context, cfg *config.Config) error {
	e.ctl.Lock()
	defer e.ctl.Unlock()
	old := e.Config()
	if err := e.syncSources(ctx, cfg); err != nil {
		return err
	}
	var needRestart []string
	if !reflect.DeepEqual(old.Metadata, cfg.Metadata) {
		needRestart = append(needRestart, "[metadata]")
	}
	storage := old.Storage
	if !reflect.DeepEqual(old.Storage, cfg.Storage) {
		if encryptionOnly(old.Storage, cfg.Storage) && setEncryption(e.artifacts, cfg.Storage) {
			storage = cfg.Storage // new artifacts go to the new recipients
		} else {
			needRestart = append(needRestart, "[storage]")
		}
	}
	if !reflect.DeepEqual(old.Engine, cfg.Engine) {
		needRestart = append(needRestart, "[engine]")
	}
	if !reflect.DeepEqual(old.API, cfg.API) {
		needRestart = append(needRestart, "[api]")
	}
	if !reflect.DeepEqual(old.Log, cfg.Log) {
		needRestart = append(needRestart, "[log]")
	}
	// Keep what cannot change live.
	cfg.Metadata, cfg.Storage, cfg.Engine, cfg.API, cfg.Log = old.Metadata, storage, old.Engine, old.API, old.Log

	e.mu.Lock()
	running := e.runCtx != nil && e.runCtx.Err() == nil
	e.mu.Unlock()
	var added, removed, changed []string
	next := map[string]*config.Source{}
	for i := range cfg.Sources {
		next[cfg.Sources[i].Name] = &cfg.Sources[i]
	}
	for name, r := range e.snapshotRunners() {
		sc, keep := next[name]
		switch {
		case !keep:
			removed = append(removed, name)
			if running {
				e.stop(r)
			}
			e.mu.Lock()
			delete(e.runners, name)
			e.mu.Unlock()
		case !reflect.DeepEqual(*r.cfg, *sc):
			changed = append(changed, name)
			if running {
				e.stop(r)
			}
			r.cfg = sc
			if running {
				e.start(r)
			}
		}
	}
	for name, sc := range next {
		if _, ok := e.runner(name); ok {
			continue
		}
		added = append(added, name)
		r := &runner{cfg: sc}
		e.mu.Lock()
		e.runners[name] = r
		e.mu.Unlock()
		if running {
			e.start(r)
		}
	}
	e.mu.Lock()
	e.cfg = cfg
	e.mu.Unlock()
	msg := fmt.Sprintf("configuration reloaded from %s: %d added, %d removed, %d changed", cfg.Path, len(added), len(removed), len(changed))
	e.Event(ctx, 0, levelInfo, kind.ConfigReloaded, msg, map[string]string{
		"added": strings.Join(added, ","), "removed": strings.Join(removed, ","), "changed": strings.Join(changed, ","),
	})
	if len(needRestart) > 0 {
		e.Event(ctx, 0, levelWarn, kind.ConfigRestartNeeded, fmt.Sprintf("changes to %s apply at the next start of btfu", strings.Join(needRestart, ", ")), nil)
	}
	return nil
}

func (e *Engine) snapshotRunners() map[string]*runner {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := make(map[string]*runner, len(e.runners))
	for n, r := range e.runners {
		m[n] = r
	}
	return m
}

// configPoll is how often WatchConfig looks at the file.
var configPoll = 2 * time.Second

// WatchConfig reloads the configuration file when its content changes or
// when hup receives (SIGHUP). An invalid file keeps the running
// configuration; the problem is reported as an event (the TUI's banner,
// a headless log line) naming the key. It returns when ctx ends.
func (e *Engine) WatchConfig(ctx context.Context, hup <-chan os.Signal) {
	w := newConfigWatcher(e.Config().Path)
	t := time.NewTicker(configPoll)
	defer t.Stop()
	for {
		forced := false
		select {
		case <-ctx.Done():
			return
		case <-hup:
			forced = true
		case <-t.C:
		}
		if !w.changed(forced) {
			continue
		}
		cfg, err := config.Load(w.path)
		if err != nil {
			e.Event(ctx, 0, levelError, kind.ConfigInvalid, fmt.Sprintf("%v; still running with the previous configuration", err), map[string]string{"config": w.path})
			continue
		}
		if err := e.Reload(ctx, cfg); err != nil {
			e.Event(ctx, 0, levelError, kind.ConfigReloadFailed, err.Error(), map[string]string{"config": w.path})
		}
	}
}

// configWatcher tells when the configuration file has a new content to
// load. A changed file is loaded once it reads the same at two looks in a
// row: an editor or a shell that truncates the file and then writes it
// would otherwise have its first half applied (a file cut after its
// first source is a valid configuration without the others, which would
// stop them).
type configWatcher struct {
	path string
	last [32]byte // the content last loaded (or found at the start)
	seen [32]byte // the content at the last look
}

// newConfigWatcher watches path from its content now.
func newConfigWatcher(path string) *configWatcher {
	sum := fileSum(path)
	return &configWatcher{path: path, last: sum, seen: sum}
}

// changed looks at the file: true when it is to be loaded now (forced:
// SIGHUP, which loads it whatever it holds).
func (w *configWatcher) changed(forced bool) bool {
	sum := fileSum(w.path)
	settled := sum == w.seen
	w.seen = sum
	if !forced && (sum == w.last || !settled) {
		return false
	}
	w.last = sum
	return true
}

func fileSum(path string) [32]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return [32]byte{}
	}
	return sha256.Sum256(b)
}
