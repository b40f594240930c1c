package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/store"
)

// RemoteEngine is a running btfu's engine seen through its control API:
// what the TUI needs (it implements tui.Engine), so a TUI in one process
// can attach to an engine in another. Restores run in the engine's
// process and outlive the client.
type RemoteEngine struct {
	c    *Client
	info Info

	mu    sync.Mutex
	cfg   *config.Config
	cfgAt time.Time
}

// configEvery is how often Status also refreshes the cached configuration
// and engine identity (Config and AttachedTo must answer without I/O).
const configEvery = 2 * time.Second

// Attach returns the engine the client talks to, after reading who it is
// and its configuration.
func Attach(ctx context.Context, c *Client) (*RemoteEngine, error) {
	r := &RemoteEngine{c: c}
	if err := r.refreshConfig(ctx); err != nil {
		return nil, fmt.Errorf("attach to btfu on %s: %w", c.Where(), err)
	}
	return r, nil
}

// Info is the engine's identity as last read.
func (r *RemoteEngine) Info() Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info
}

// AttachedTo implements tui.Attached.
func (r *RemoteEngine) AttachedTo() (where, host string, pid int, started time.Time, version string) {
	i := r.Info()
	return r.c.Where(), i.Host, i.PID, i.StartedAt, i.Version
}

// refreshConfig reads the configuration again, and who the engine is (a
// restarted engine has another pid).
func (r *RemoteEngine) refreshConfig(ctx context.Context) error {
	var v ConfigView
	err := r.c.Do(ctx, http.MethodGet, "/v1/config", &v)
	var info Info
	if err == nil {
		err = r.c.Do(ctx, http.MethodGet, "/v1/engine", &info)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfgAt = time.Now()
	if err == nil {
		r.cfg, r.info = v.Config(), info
	}
	return err
}

// Config is the engine's configuration as last read: source names, DSNs
// and restore targets with passwords masked.
func (r *RemoteEngine) Config() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg
}

// Status reads the engine's status (and, every few seconds, its
// configuration, which a reload may have changed).
func (r *RemoteEngine) Status(ctx context.Context) (engine.Status, error) {
	r.mu.Lock()
	stale := time.Since(r.cfgAt) > configEvery
	r.mu.Unlock()
	if stale {
		_ = r.refreshConfig(ctx)
	}
	var st engine.Status
	err := r.c.Do(ctx, http.MethodGet, "/v1/sources", &st)
	var op *net.OpError
	if errors.As(err, &op) {
		// The engine went away: say so in a line the dashboard can show.
		i := r.Info()
		err = fmt.Errorf("btfu (pid %d) does not answer on %s: %v; it stopped or restarts, and shows again here when it answers", i.PID, r.c.Where(), op.Err)
	}
	return st, err
}

// Subscribe streams the engine's events until ctx ends; a dropped stream
// is opened again after a second. Events are delivered in order; none
// are dropped while the stream holds.
func (r *RemoteEngine) Subscribe(ctx context.Context) <-chan engine.EventRecord {
	ch := make(chan engine.EventRecord, 64)
	// The first connection is made before Subscribe returns: events from
	// then on are delivered.
	resp, err := r.c.open(ctx, http.MethodGet, "/v1/events/stream", nil)
	go func() {
		defer close(ch)
		for ctx.Err() == nil {
			if err == nil {
				_ = r.stream(ctx, resp, ch)
			}
			resp = nil
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			if ctx.Err() == nil {
				resp, err = r.c.open(ctx, http.MethodGet, "/v1/events/stream", nil)
			}
		}
	}()
	return ch
}

func (r *RemoteEngine) stream(ctx context.Context, resp *http.Response, ch chan<- engine.EventRecord) error {
	defer resp.Body.Close()
	return readSSE(resp.Body, func(data []byte) bool {
		var ev engine.EventRecord
		if json.Unmarshal(data, &ev) != nil {
			return true
		}
		select {
		case ch <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	})
}

// RecentEvents lists the engine's recent events (nil if it does not
// answer within 5 s).
func (r *RemoteEngine) RecentEvents() []engine.EventRecord {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var evs []engine.EventRecord
	if err := r.c.Do(ctx, http.MethodGet, "/v1/events", &evs); err != nil {
		return nil
	}
	return evs
}

func sourcePath(name, what string) string {
	return "/v1/sources/" + url.PathEscape(name) + "/" + what
}

// BackupNow takes a base backup in the engine and waits until it is
// stored.
func (r *RemoteEngine) BackupNow(ctx context.Context, name string) (store.BaseBackup, error) {
	var b BaseBackup
	if err := r.c.Do(ctx, http.MethodPost, sourcePath(name, "backup"), &b); err != nil {
		return store.BaseBackup{}, err
	}
	out := store.BaseBackup{ID: b.ID, ArtifactKey: b.Key, Status: b.Status, SnapshotTime: b.SnapshotTime, StartedAt: b.StartedAt,
		FinishedAt: b.FinishedAt, SizeBytes: b.Bytes, SHA256: b.SHA256, PgDumpVersion: b.PgDumpVersion, ServerVersion: b.ServerVersion, Error: b.Error}
	if l, err := restore.ParseLSN(b.ConsistentLSN); err == nil {
		out.ConsistentLSN = l
	}
	return out, nil
}

func (r *RemoteEngine) Pause(ctx context.Context, name string) error {
	return r.c.Do(ctx, http.MethodPost, sourcePath(name, "pause"), nil)
}

func (r *RemoteEngine) Resume(ctx context.Context, name string) error {
	return r.c.Do(ctx, http.MethodPost, sourcePath(name, "resume"), nil)
}

func (r *RemoteEngine) Probe(ctx context.Context, name string) (*probe.Report, error) {
	var rep probe.Report
	if err := r.c.Do(ctx, http.MethodGet, sourcePath(name, "probe"), &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Coverage reads the source's chains, base backups and ranges. Segments
// stay in the engine (a screen draws ranges): the list holds one empty
// record per segment, allocated lazily.
func (r *RemoteEngine) Coverage(ctx context.Context, name string) (coverage.Source, error) {
	var cov Chains
	err := r.c.Do(ctx, http.MethodGet, sourcePath(name, "chains")+"?segments=false", &cov)
	cov.Segments = make([]store.Segment, cov.SegmentCount)
	return cov.Source, err
}

func (r *RemoteEngine) SourceRecord(ctx context.Context, name string) (store.Source, error) {
	var rec store.Source
	err := r.c.Do(ctx, http.MethodGet, sourcePath(name, "record"), &rec)
	return rec, err
}

// PlanRestore plans in the engine. As in Coverage, Segments holds one
// empty record per segment the plan replays; Restore plans again there.
func (r *RemoteEngine) PlanRestore(ctx context.Context, name string, t restore.Target) (*restore.Plan, error) {
	var p PlanAnswer
	if err := r.c.post(ctx, sourcePath(name, "plan")+"?segments=false", wireTarget(t), &p); err != nil {
		return nil, err
	}
	p.Segments = make([]store.Segment, p.SegmentCount)
	return &p.Plan, nil
}

func (r *RemoteEngine) CheckTarget(ctx context.Context, name, dsn string) (restore.TargetInfo, error) {
	var info restore.TargetInfo
	err := r.c.post(ctx, sourcePath(name, "check-target"), TargetDSN{DSN: dsn}, &info)
	return info, err
}

// Restore runs the restore in the engine's process, to plan's target
// (planned again there: the same target gives the same base and chain),
// calling opts.Progress as progress arrives. The restore outlives this
// client: if the connection drops it goes on. ctx ending interrupts it.
func (r *RemoteEngine) Restore(ctx context.Context, name string, plan *restore.Plan, opts restore.Options) (restore.Summary, error) {
	req := RestoreRequest{Target: wireTarget(plan.Target), TargetDSN: opts.TargetDSN, NoOwner: opts.NoOwner, Clean: opts.Clean}
	body, err := json.Marshal(req)
	if err != nil {
		return restore.Summary{}, err
	}
	// The request lives on after ctx ends, until the engine says how the
	// restore ended: ctx ending asks the engine to interrupt it.
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	resp, err := r.c.open(rctx, http.MethodPost, sourcePath(name, "restore"), bytes.NewReader(body))
	if err != nil {
		return restore.Summary{}, err
	}
	defer resp.Body.Close()
	lines := make(chan RestoreUpdate)
	readErr := make(chan error, 1)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), maxBody)
		for sc.Scan() {
			var u RestoreUpdate
			if err := json.Unmarshal(sc.Bytes(), &u); err != nil {
				readErr <- fmt.Errorf("btfu on %s: restore answer: %w", r.c.Where(), err)
				return
			}
			select {
			case lines <- u:
			case <-rctx.Done():
				return
			}
		}
		readErr <- sc.Err()
	}()
	var id int64
	cancelled, stopAsked, stopSent := ctx.Done(), false, false
	askStop := func() {
		if stopAsked && id != 0 && !stopSent {
			stopSent = true
			cctx, cancel := context.WithTimeout(rctx, 10*time.Second)
			_ = r.c.Do(cctx, http.MethodPost, fmt.Sprintf("/v1/restores/%d/cancel", id), nil)
			cancel()
		}
	}
	for {
		select {
		case <-cancelled:
			cancelled, stopAsked = nil, true
			askStop()
		case u, ok := <-lines:
			if !ok {
				err := <-readErr
				if err == nil {
					err = errors.New("the connection ended before the restore did")
				}
				return restore.Summary{}, fmt.Errorf("btfu on %s: %w; the restore may still be running there: see btfu status", r.c.Where(), err)
			}
			if u.ID != 0 && id == 0 {
				id = u.ID
				askStop() // ctx ended before the engine named the restore
			}
			switch {
			case u.Progress != nil && opts.Progress != nil:
				opts.Progress(*u.Progress)
			case u.Done && u.Error != "":
				return restore.Summary{}, errors.New(u.Error)
			case u.Done && u.Summary != nil:
				return *u.Summary, nil
			}
		}
	}
}

// Reload asks the engine to read its config.toml again (cfg is not sent:
// the engine reads its own file).
func (r *RemoteEngine) Reload(ctx context.Context, _ *config.Config) error {
	if err := r.c.post(ctx, "/v1/reload", nil, nil); err != nil {
		return err
	}
	return r.refreshConfig(ctx)
}

func (r *RemoteEngine) ProbeSource(ctx context.Context, b config.SourceBlock) (*probe.Report, error) {
	var rep probe.Report
	if err := r.c.post(ctx, "/v1/probe", b, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

func (r *RemoteEngine) AddSource(ctx context.Context, b config.SourceBlock) error {
	if err := r.c.post(ctx, "/v1/sources", b, nil); err != nil {
		return err
	}
	return r.refreshConfig(ctx)
}

// open sends a request and returns the response of a 2xx answer, whose
// body the caller reads and closes; other answers become errors carrying
// the server's message.
func (c *Client) open(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("btfu on %s: %w", c.where, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		var e Error
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("btfu on %s answered %s", c.where, resp.Status)
	}
	return resp, nil
}

// post sends in as a JSON body and decodes the JSON answer into out (if
// not nil).
func (c *Client) post(ctx context.Context, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.open(ctx, http.MethodPost, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("btfu on %s: %w", c.where, err)
	}
	return nil
}
