package api

// The routes a TUI attached to this engine uses (see RemoteEngine): who
// the engine is, its configuration without secrets, a live event stream,
// probes, coverage in full, restore planning, restores that run here with
// their progress streamed, and registering a source.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/store"
)

// Info is the body of GET /v1/engine: the engine an attached TUI names in
// its header.
type Info struct {
	Version   string    `json:"version"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"started_at"`
	Config    string    `json:"config"` // the config file's path
}

// ConfigView is the body of GET /v1/config: what a client needs of the
// engine's configuration, every connection string's password masked.
type ConfigView struct {
	Path    string       `json:"path"`
	Sources []SourceView `json:"sources"`
}

// SourceView is one [[source]] in ConfigView.
type SourceView struct {
	Name          string `json:"name"`
	DSN           string `json:"dsn"`                      // password masked
	RestoreTarget string `json:"restore_target,omitempty"` // password masked
	Paused        bool   `json:"paused,omitempty"`
}

func configView(cfg *config.Config) ConfigView {
	v := ConfigView{Path: cfg.Path, Sources: []SourceView{}}
	for _, s := range cfg.Sources {
		dsn := redact.DSN(s.DSN)
		if s.DSNFile != "" {
			dsn = "" // it comes from a file; the file's contents stay here
		}
		v.Sources = append(v.Sources, SourceView{Name: s.Name, DSN: dsn, RestoreTarget: redact.DSN(s.RestoreTarget), Paused: s.Paused})
	}
	return v
}

// Config rebuilds a read-only configuration from the view: enough for a
// client's screens (source names, restore targets), nothing secret.
func (v ConfigView) Config() *config.Config {
	cfg := &config.Config{Path: v.Path}
	for _, s := range v.Sources {
		cfg.Sources = append(cfg.Sources, config.Source{Name: s.Name, DSN: s.DSN, RestoreTarget: s.RestoreTarget, Paused: s.Paused})
	}
	return cfg
}

// Target is a restore target on the wire: a time, an LSN, or latest.
type Target struct {
	Time   *time.Time `json:"time,omitempty"`
	LSN    string     `json:"lsn,omitempty"`
	Latest bool       `json:"latest,omitempty"`
}

func wireTarget(t restore.Target) Target {
	switch {
	case t.Latest:
		return Target{Latest: true}
	case !t.Time.IsZero():
		tm := t.Time
		return Target{Time: &tm}
	}
	return Target{LSN: t.LSN.String()}
}

func (t Target) target() (restore.Target, error) {
	switch {
	case t.Latest:
		return restore.Target{Latest: true}, nil
	case t.Time != nil:
		return restore.Target{Time: *t.Time}, nil
	case t.LSN != "":
		l, err := restore.ParseLSN(t.LSN)
		if err != nil {
			return restore.Target{}, fmt.Errorf("target lsn %q: %w", t.LSN, err)
		}
		return restore.Target{LSN: l}, nil
	}
	return restore.Target{}, errors.New(`a restore target needs "time", "lsn" or "latest": true`)
}

// TargetDSN is the body of POST /v1/sources/{name}/check-target.
type TargetDSN struct {
	DSN string `json:"dsn"`
}

// RestoreRequest is the body of POST /v1/sources/{name}/restore.
type RestoreRequest struct {
	Target    Target `json:"target"`
	TargetDSN string `json:"target_dsn"`
	NoOwner   bool   `json:"no_owner,omitempty"`
	Clean     bool   `json:"clean,omitempty"`
}

// RestoreUpdate is one line of the answer to POST
// /v1/sources/{name}/restore (newline-delimited JSON): first the
// restore's id, then progress, last the summary or the error.
type RestoreUpdate struct {
	ID       int64             `json:"id,omitempty"`
	Progress *restore.Progress `json:"progress,omitempty"`
	Summary  *restore.Summary  `json:"summary,omitempty"`
	Error    string            `json:"error,omitempty"`
	Done     bool              `json:"done,omitempty"`
}

// Added is the answer to POST /v1/sources.
type Added struct {
	Source string `json:"source"`
	Config string `json:"config"`
}

// maxBody bounds request bodies.
const maxBody = 1 << 20

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return false
	}
	return true
}

// writeSafe is writeJSON with every secret and DSN password masked,
// whatever field it hides in.
func writeSafe(w http.ResponseWriter, v any) {
	b, err := masked(v, "  ")
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(b, '\n'))
}

// masked encodes v as JSON with redact.String applied to every string in
// it (keys and values), never to the JSON around them: a secret that
// looks like a number or true cannot break the answer. Key order and
// numbers stay as encoded.
func masked(v any, indent string) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out bytes.Buffer
	// One frame per open object or array: how many tokens it has had.
	type frame struct {
		object bool
		n      int
	}
	var stack []frame
	separate := func() {
		if len(stack) == 0 {
			return
		}
		top := &stack[len(stack)-1]
		switch {
		case top.object && top.n%2 == 1:
			out.WriteByte(':')
		case top.n > 0:
			out.WriteByte(',')
		}
		top.n++
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case json.Delim:
			if t == '}' || t == ']' {
				stack = stack[:len(stack)-1]
				out.WriteByte(byte(t))
				continue
			}
			separate()
			out.WriteByte(byte(t))
			stack = append(stack, frame{object: t == '{'})
		case string:
			separate()
			enc, _ := json.Marshal(redact.String(t))
			out.Write(enc)
		default:
			separate()
			enc, err := json.Marshal(t)
			if err != nil {
				return nil, err
			}
			out.Write(enc)
		}
	}
	if indent == "" {
		return out.Bytes(), nil
	}
	var ind bytes.Buffer
	if err := json.Indent(&ind, out.Bytes(), "", indent); err != nil {
		return nil, err
	}
	return ind.Bytes(), nil
}

func (s *Server) engineInfo(w http.ResponseWriter, r *http.Request) {
	writeSafe(w, s.info())
}

func (s *Server) configRoute(w http.ResponseWriter, r *http.Request) {
	writeSafe(w, configView(s.eng.Config()))
}

// eventStream sends engine events as server-sent events (one JSON
// EventRecord per "data:" line) until the client goes away or the engine
// stops; a comment line every 15 s keeps idle connections alive.
func (s *Server) eventStream(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, errors.New("this connection cannot stream"))
		return
	}
	ctx, cancel := context.WithCancel(s.baseContext())
	defer cancel()
	evs := s.eng.Subscribe(ctx)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": btfu events\n\n")
	fl.Flush()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
		case ev, ok := <-evs:
			if !ok {
				return
			}
			ev.Message = redact.String(ev.Message)
			if ev.Attrs != nil {
				attrs := make(map[string]string, len(ev.Attrs)) // other subscribers share the map
				for k, v := range ev.Attrs {
					attrs[k] = redact.String(v)
				}
				ev.Attrs = attrs
			}
			b, err := json.Marshal(ev)
			if err != nil {
				continue
			}
			if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
				return
			}
		}
		fl.Flush()
	}
}

func (s *Server) probeSource(w http.ResponseWriter, r *http.Request) {
	sc, ok := s.source(w, r)
	if !ok {
		return
	}
	rep, err := s.eng.Probe(r.Context(), sc.Name)
	if err != nil {
		writeError(w, http.StatusBadGateway, fmt.Errorf("probe %s: %w", sc.Name, err))
		return
	}
	writeSafe(w, rep)
}

// record answers with the source's metadata record (also for sources
// removed from the config whose records remain).
func (s *Server) record(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rec, err := s.eng.SourceRecord(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Errorf("source %s has no record: it has not run yet", name))
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("record of %s: %w", name, err))
		return
	}
	writeSafe(w, rec)
}

// withSegments: the request wants every segment listed (the default);
// ?segments=false counts them instead, which is all a screen needs (a
// busy source stores a segment a second: hundreds of bytes each).
func withSegments(r *http.Request) bool { return r.URL.Query().Get("segments") != "false" }

// Chains is the body of GET /v1/sources/{name}/chains: coverage.Source,
// and how many segments it has (listed unless ?segments=false).
type Chains struct {
	coverage.Source
	SegmentCount int `json:"segment_count"`
}

// PlanAnswer is the body of POST /v1/sources/{name}/plan: restore.Plan,
// and how many segments it replays (listed unless ?segments=false).
type PlanAnswer struct {
	restore.Plan
	SegmentCount int `json:"segment_count"`
}

// chains answers with the source's coverage in full: chains, base
// backups, segments and ranges (the TUI's timeline).
func (s *Server) chains(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	cov, err := s.eng.Coverage(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Errorf("source %s has not run yet: no coverage", name))
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("coverage of %s: %w", name, err))
		return
	}
	out := Chains{Source: cov, SegmentCount: len(cov.Segments)}
	if !withSegments(r) {
		out.Segments = nil
	}
	writeSafe(w, out)
}

func (s *Server) plan(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var t Target
	if !decode(w, r, &t) {
		return
	}
	target, err := t.target()
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	p, err := s.eng.PlanRestore(r.Context(), name, target)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err)
		return
	}
	out := PlanAnswer{Plan: *p, SegmentCount: len(p.Segments)}
	if !withSegments(r) {
		out.Segments = nil
	}
	writeSafe(w, out)
}

// secretIn remembers the password of a DSN a client sent, so that the
// log and every answer mask it wherever it shows, not only inside DSNs.
func secretIn(dsn string) {
	if c, err := pgconn.ParseConfig(dsn); err == nil && c.Password != "" {
		redact.Register(c.Password)
	}
}

// targetDSN is the DSN a client sent, or the configured restore_target
// when the client sent that back with its password masked (GET /v1/config
// masks it): a configured password never crosses the API. A masked URL
// edited elsewhere (another database) gets the configured password back
// only for the same user on the same host.
func targetDSN(sc *config.Source, sent string) string {
	if sc.RestoreTarget != "" && sent == redact.DSN(sc.RestoreTarget) {
		return sc.RestoreTarget
	}
	if u, err := url.Parse(sent); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw == redact.Mask {
			if c, err := url.Parse(sc.RestoreTarget); err == nil && c.User != nil && c.Host == u.Host && c.User.Username() == u.User.Username() {
				if real, ok := c.User.Password(); ok {
					u.User = url.UserPassword(u.User.Username(), real)
					return u.String()
				}
			}
		}
	}
	secretIn(sent)
	return sent
}

func (s *Server) checkTarget(w http.ResponseWriter, r *http.Request) {
	sc, ok := s.source(w, r)
	if !ok {
		return
	}
	var body TargetDSN
	if !decode(w, r, &body) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	info, err := s.eng.CheckTarget(ctx, sc.Name, targetDSN(sc, body.DSN))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Errorf("source %s has no record: it has not run yet", sc.Name))
		return
	}
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err)
		return
	}
	writeSafe(w, info)
}

// restoreRoute runs a restore in this process, under the server's
// context: a client that goes away (an SSH connection dropped) leaves it
// running; POST /v1/restores/{id}/cancel or stopping btfu interrupts it.
// Progress streams latest-wins while the client listens.
func (s *Server) restoreRoute(w http.ResponseWriter, r *http.Request) {
	sc, ok := s.source(w, r)
	if !ok {
		return
	}
	var req RestoreRequest
	if !decode(w, r, &req) {
		return
	}
	t, err := req.Target.target()
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if req.TargetDSN == "" {
		writeError(w, http.StatusBadRequest, errors.New(`a restore needs "target_dsn": the database to restore into`))
		return
	}
	plan, err := s.eng.PlanRestore(r.Context(), sc.Name, t)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err)
		return
	}
	fl, canFlush := w.(http.Flusher)
	ctx, cancel := context.WithCancel(s.baseContext())
	id := s.addRestore(cancel)
	progress := make(chan restore.Progress, 1)
	done := make(chan RestoreUpdate, 1)
	opts := restore.Options{TargetDSN: targetDSN(sc, req.TargetDSN), NoOwner: req.NoOwner, Clean: req.Clean,
		Progress: func(p restore.Progress) {
			for { // latest wins, never blocking the restore
				select {
				case progress <- p:
					return
				default:
				}
				select {
				case <-progress:
				default:
				}
			}
		}}
	go func() {
		defer s.removeRestore(id)
		defer cancel()
		sum, err := s.eng.Restore(ctx, sc.Name, plan, opts)
		u := RestoreUpdate{ID: id, Summary: &sum, Done: true}
		if err != nil {
			u.Summary, u.Error = nil, redact.String(err.Error())
		}
		done <- u
	}()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	send := func(u RestoreUpdate) bool {
		b, err := masked(u, "")
		if err != nil {
			return false
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return false
		}
		if canFlush {
			fl.Flush()
		}
		return true
	}
	if !send(RestoreUpdate{ID: id}) {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return // the restore goes on
		case p := <-progress:
			if !send(RestoreUpdate{ID: id, Progress: &p}) {
				return
			}
		case u := <-done:
			send(u)
			return
		}
	}
}

func (s *Server) cancelRestore(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("restore id %q is not a number", r.PathValue("id")))
		return
	}
	s.mu.Lock()
	cancel, ok := s.restores[id]
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no restore %d is running here", id))
		return
	}
	cancel()
	writeJSON(w, http.StatusOK, RestoreUpdate{ID: id})
}

func (s *Server) addRestore(cancel context.CancelFunc) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextRestore++
	s.restores[s.nextRestore] = cancel
	return s.nextRestore
}

func (s *Server) removeRestore(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.restores, id)
}

// probeBlock probes a source that is not configured yet (the register
// form), built through config.Parse so defaults and validation are the
// file's own.
func (s *Server) probeBlock(w http.ResponseWriter, r *http.Request) {
	var b config.SourceBlock
	if !decode(w, r, &b) {
		return
	}
	secretIn(b.DSN)
	rep, err := s.eng.ProbeSource(r.Context(), b)
	if errors.Is(err, engine.ErrSourceBlock) {
		writeError(w, http.StatusBadRequest, errors.New(strings.ReplaceAll(err.Error(), "form: ", "")))
		return
	}
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	writeSafe(w, rep)
}

// addSource appends a [[source]] to this engine's config.toml (every
// existing byte kept) and reloads, which starts it.
func (s *Server) addSource(w http.ResponseWriter, r *http.Request) {
	var b config.SourceBlock
	if !decode(w, r, &b) {
		return
	}
	secretIn(b.DSN)
	path := s.eng.Config().Path
	if err := s.eng.AddSource(r.Context(), b); errors.Is(err, engine.ErrReload) {
		writeError(w, http.StatusInternalServerError, err)
		return
	} else if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err)
		return
	}
	writeSafe(w, Added{Source: b.Name, Config: path})
}

// reload reads this engine's config.toml again and applies it, as SIGHUP
// does.
func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	path := s.eng.Config().Path
	cfg, err := config.Load(path)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err)
		return
	}
	if err := s.eng.Reload(r.Context(), cfg); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("reload %s: %w", path, err))
		return
	}
	writeSafe(w, configView(s.eng.Config()))
}

// readSSE calls fn with the data of each server-sent event on r until r
// ends or fn returns false.
func readSSE(r io.Reader, fn func(data []byte) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxBody)
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if len(data) > 0 && !fn(data) {
				return nil
			}
			data = nil
		case line[0] == ':':
		default:
			if v, ok := strings.CutPrefix(string(line), "data:"); ok {
				data = append(data, strings.TrimPrefix(v, " ")...)
			}
		}
	}
	return sc.Err()
}
