// Package api is btfu's local control API: the running engine answers
// HTTP on a unix socket (mode 0600) and, optionally, on TCP, where clients
// other than loopback must send a bearer token.
//
//	GET  /health                          200 when every source streams with nothing needing attention, else 503
//	GET  /metrics                         Prometheus text format 0.0.4
//	GET  /v1/sources                      engine.Status
//	GET  /v1/sources/{name}/coverage      ranges, base backups, segment count and bytes
//	GET  /v1/events[?since=T]             recent engine events (T: RFC 3339 time or a duration such as 10m)
//	POST /v1/sources/{name}/backup        a base backup now (answers when it is stored)
//	POST /v1/sources/{name}/pause|resume
//	POST /v1/sources/{name}/drill         a restore drill now (answers when it has finished, passed or failed)
//
// and what a TUI attached to this engine uses (attach.go):
//
//	GET  /v1/engine                       version, host, pid, start time, config path
//	GET  /v1/config                       source names, DSNs and restore targets, passwords masked
//	GET  /v1/events/stream                engine events as server-sent events, live
//	GET  /v1/sources/{name}/probe         the source's probe report
//	GET  /v1/sources/{name}/record        the source's metadata record
//	GET  /v1/sources/{name}/chains        coverage in full: chains, base backups, segments, ranges
//	POST /v1/sources/{name}/plan          plan a restore to {"time"|"lsn"|"latest"}
//	POST /v1/sources/{name}/check-target  connect to {"dsn"}: refuse the source itself
//	POST /v1/sources/{name}/restore       run a restore here; answers NDJSON progress, then the summary
//	POST /v1/restores/{id}/cancel         interrupt a running restore
//	POST /v1/probe                        probe a [[source]] not configured yet
//	POST /v1/sources                      append a [[source]] to config.toml and start it
//	POST /v1/reload                       read config.toml again (as SIGHUP)
//
// Every error is JSON {"error": "..."} with passwords masked.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/store"
)

// Engine is what the API needs from the running engine.
type Engine interface {
	Config() *config.Config
	Status(ctx context.Context) (engine.Status, error)
	Coverage(ctx context.Context, name string) (coverage.Source, error)
	BackupNow(ctx context.Context, name string) (store.BaseBackup, error)
	Pause(ctx context.Context, name string) error
	Resume(ctx context.Context, name string) error
	Subscribe(ctx context.Context) <-chan engine.EventRecord
	RecentEvents() []engine.EventRecord
	// What an attached TUI needs besides.
	Probe(ctx context.Context, name string) (*probe.Report, error)
	SourceRecord(ctx context.Context, name string) (store.Source, error)
	PlanRestore(ctx context.Context, name string, t restore.Target) (*restore.Plan, error)
	Restore(ctx context.Context, name string, plan *restore.Plan, opts restore.Options) (restore.Summary, error)
	Reload(ctx context.Context, cfg *config.Config) error
	CheckTarget(ctx context.Context, name, dsn string) (restore.TargetInfo, error)
	ProbeSource(ctx context.Context, b config.SourceBlock) (*probe.Report, error)
	AddSource(ctx context.Context, b config.SourceBlock) error
}

var _ Engine = (*engine.Engine)(nil)

// Options configure a Server.
type Options struct {
	// Token is the bearer token TCP clients must send. Without one, only
	// loopback TCP clients are served.
	Token string
	// RequireToken asks for the token from loopback TCP clients too.
	// Unix-socket clients never need it: the socket's mode (0600) decides
	// who may connect.
	RequireToken bool
	// Version is btfu's version, as GET /v1/engine answers.
	Version string
	// Log receives the HTTP server's own errors (a failed accept, a
	// malformed request); nil discards them. Never stderr: the TUI may
	// own the terminal.
	Log *slog.Logger
}

// Server serves the API for one engine.
type Server struct {
	eng  Engine
	opts Options

	mu       sync.Mutex
	errors   map[errorKey]int64         // error-level events since start
	segments map[string]*segmentCounter // btfu_segments_stored_total

	started     time.Time
	ctx         context.Context // Start's: restores run under it
	restores    map[int64]context.CancelFunc
	nextRestore int64
}

type errorKey struct{ source, category string }

// New returns a server for eng.
func New(eng Engine, opts Options) *Server {
	return &Server{eng: eng, opts: opts, errors: map[errorKey]int64{}, segments: map[string]*segmentCounter{},
		started: time.Now(), restores: map[int64]context.CancelFunc{}}
}

// info says which engine this is.
func (s *Server) info() Info {
	host, _ := os.Hostname()
	v := s.opts.Version
	if v == "" {
		v = "dev"
	}
	return Info{Version: v, Host: host, PID: os.Getpid(), StartedAt: s.started, Config: s.eng.Config().Path}
}

// baseContext is the context work outliving a request runs under: Start's,
// which ends when the engine stops.
func (s *Server) baseContext() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return context.Background()
	}
	return s.ctx
}

// countErrors counts error-level engine events by source and category
// (the kind up to its first dot) until evs closes.
func (s *Server) countErrors(evs <-chan engine.EventRecord) {
	for ev := range evs {
		if ev.Level < slog.LevelError {
			continue
		}
		cat, _, _ := strings.Cut(ev.Kind, ".")
		s.mu.Lock()
		s.errors[errorKey{ev.Source, cat}]++
		s.mu.Unlock()
	}
}

// Handler returns the API's routes behind the token check.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("GET /metrics", s.metrics)
	mux.HandleFunc("GET /v1/sources", s.sources)
	mux.HandleFunc("GET /v1/sources/{name}/coverage", s.coverage)
	mux.HandleFunc("GET /v1/events", s.events)
	mux.HandleFunc("POST /v1/sources/{name}/backup", s.backup)
	mux.HandleFunc("POST /v1/sources/{name}/drill", s.drill) // drill.go
	mux.HandleFunc("POST /v1/sources/{name}/pause", s.pause)
	mux.HandleFunc("POST /v1/sources/{name}/resume", s.resume)
	mux.HandleFunc("GET /v1/engine", s.engineInfo)
	mux.HandleFunc("GET /v1/config", s.configRoute)
	mux.HandleFunc("GET /v1/events/stream", s.eventStream)
	mux.HandleFunc("GET /v1/sources/{name}/probe", s.probeSource)
	mux.HandleFunc("GET /v1/sources/{name}/record", s.record)
	mux.HandleFunc("GET /v1/sources/{name}/chains", s.chains)
	mux.HandleFunc("POST /v1/sources/{name}/plan", s.plan)
	mux.HandleFunc("POST /v1/sources/{name}/check-target", s.checkTarget)
	mux.HandleFunc("POST /v1/sources/{name}/restore", s.restoreRoute)
	mux.HandleFunc("POST /v1/restores/{id}/cancel", s.cancelRestore)
	mux.HandleFunc("POST /v1/probe", s.probeBlock)
	mux.HandleFunc("POST /v1/sources", s.addSource)
	mux.HandleFunc("POST /v1/reload", s.reload)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { notFound(mux, w, r) })
	return s.auth(mux)
}

// notFound answers requests no route takes, in JSON: 405 when the path
// exists for another method, else 404.
func notFound(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if m == r.Method {
			continue
		}
		other := r.Clone(r.Context())
		other.Method = m
		if _, pattern := mux.Handler(other); pattern != "/" && pattern != "" {
			w.Header().Set("Allow", m)
			writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("%s %s: use %s", r.Method, r.URL.Path, m))
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Errorf("no endpoint %s %s; see the API section of btfu's README", r.Method, r.URL.Path))
}

// viaSocket marks requests that came in on the unix socket.
type viaSocket struct{}

// auth asks TCP clients for the bearer token: all of them with
// RequireToken, else those not on loopback.
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.needsToken(r) && !s.tokenOK(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="btfu"`)
			msg := "missing or wrong bearer token: send Authorization: Bearer <[api] token from config.toml>"
			if s.opts.Token == "" {
				msg = "this btfu has no [api] token, so it answers only loopback clients and its unix socket"
			}
			writeError(w, http.StatusUnauthorized, errors.New(msg))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) needsToken(r *http.Request) bool {
	if sock, _ := r.Context().Value(viaSocket{}).(bool); sock {
		return false
	}
	return s.opts.RequireToken || !loopback(r.RemoteAddr)
}

func (s *Server) tokenOK(r *http.Request) bool {
	if s.opts.Token == "" {
		return false
	}
	scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") &&
		subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(s.opts.Token)) == 1
}

func loopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Error is the body of every error answer.
type Error struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, Error{Error: redact.String(err.Error())})
}

// source returns the configured source named in the path, or answers 404.
func (s *Server) source(w http.ResponseWriter, r *http.Request) (*config.Source, bool) {
	sc, err := s.eng.Config().Source(r.PathValue("name"))
	if err != nil {
		writeError(w, http.StatusNotFound, err)
		return nil, false
	}
	return sc, true
}

// Failing is one source /health finds wanting.
type Failing struct {
	Source string `json:"source"`
	State  string `json:"state"`
	Why    string `json:"why"`
}

// Health is the body of GET /health.
type Health struct {
	Status  string    `json:"status"` // "ok" or "unhealthy"
	Sources int       `json:"sources"`
	Failing []Failing `json:"failing,omitempty"`
}

// capturing: the state of a source whose changes are being stored, or
// whose base backup is running (the engine itself refuses a second one).
func capturing(state string) bool {
	return state == store.StateStreaming || state == store.StateBackingUp
}

// health is 200 only when every source streams (a later base backup
// beside the stream counts, the first one does not) with nothing needing
// attention (max_lag, errors, pause, WAL budget).
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	st, err := s.eng.Status(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("status: %w", err))
		return
	}
	h := Health{Status: "ok", Sources: len(st.Sources)}
	for _, ss := range st.Sources {
		why := ss.Attention
		if why == "" && !ss.Streaming {
			why = "not streaming (" + ss.State + ")"
		}
		if why != "" {
			h.Failing = append(h.Failing, Failing{Source: ss.Name, State: ss.State, Why: redact.String(why)})
		}
	}
	code := http.StatusOK
	if len(h.Failing) > 0 {
		h.Status, code = "unhealthy", http.StatusServiceUnavailable
	}
	writeJSON(w, code, h)
}

func (s *Server) sources(w http.ResponseWriter, r *http.Request) {
	st, err := s.eng.Status(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("status: %w", err))
		return
	}
	writeSafe(w, st)
}

// Coverage is the body of GET /v1/sources/{name}/coverage.
type Coverage struct {
	Source       string                 `json:"source"`
	Ranges       []engine.CoverageRange `json:"ranges"`
	BaseBackups  []BaseBackup           `json:"base_backups"`
	Segments     int                    `json:"segments"`
	SegmentBytes int64                  `json:"segment_bytes"`
}

// BaseBackup is one base backup record, as coverage lists them and as
// POST /v1/sources/{name}/backup answers.
type BaseBackup struct {
	ID              int64     `json:"id"`
	Key             string    `json:"key"`
	Status          string    `json:"status"`
	ConsistentLSN   string    `json:"consistent_lsn"`
	SnapshotTime    time.Time `json:"snapshot_time"`
	StartedAt       time.Time `json:"started_at"`
	FinishedAt      time.Time `json:"finished_at"`
	DurationSeconds float64   `json:"duration_seconds"`
	Bytes           int64     `json:"bytes"`
	SHA256          string    `json:"sha256,omitempty"`
	PgDumpVersion   string    `json:"pg_dump_version,omitempty"`
	ServerVersion   string    `json:"server_version,omitempty"`
	Error           string    `json:"error,omitempty"`
}

func baseBackup(b store.BaseBackup) BaseBackup {
	out := BaseBackup{ID: b.ID, Key: b.ArtifactKey, Status: b.Status, ConsistentLSN: b.ConsistentLSN.String(),
		SnapshotTime: b.SnapshotTime, StartedAt: b.StartedAt, FinishedAt: b.FinishedAt, Bytes: b.SizeBytes,
		SHA256: b.SHA256, PgDumpVersion: b.PgDumpVersion, ServerVersion: b.ServerVersion, Error: redact.String(b.Error)}
	if !b.FinishedAt.IsZero() {
		out.DurationSeconds = b.FinishedAt.Sub(b.StartedAt).Seconds()
	}
	return out
}

// coverage answers for configured sources and for sources removed from
// the config whose records (and backups) remain.
func (s *Server) coverage(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	cov, err := s.eng.Coverage(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		_, cerr := s.eng.Config().Source(name)
		if cerr == nil {
			cerr = fmt.Errorf("source %s has not run yet: no coverage", name)
		}
		writeError(w, http.StatusNotFound, cerr)
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("coverage of %s: %w", name, err))
		return
	}
	out := Coverage{Source: name, Ranges: []engine.CoverageRange{}, BaseBackups: []BaseBackup{}, Segments: len(cov.Segments)}
	for _, rg := range cov.Ranges {
		out.Ranges = append(out.Ranges, engine.CoverageRange{FromLSN: rg.FromLSN.String(), ToLSN: rg.ToLSN.String(), FromTime: rg.FromTime, ToTime: rg.ToTime})
	}
	for _, b := range cov.Bases {
		out.BaseBackups = append(out.BaseBackups, baseBackup(b))
	}
	for _, g := range cov.Segments {
		out.SegmentBytes += g.StoredBytes
	}
	writeJSON(w, http.StatusOK, out)
}

// events lists the engine's recent events, those after since when given.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			d, derr := time.ParseDuration(v)
			if derr != nil || d < 0 {
				writeError(w, http.StatusBadRequest, fmt.Errorf("since=%q is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor a duration (10m)", v))
				return
			}
			t = time.Now().Add(-d)
		}
		since = t
	}
	out := []engine.EventRecord{}
	for _, ev := range s.eng.RecentEvents() {
		if ev.At.After(since) {
			ev.Message = redact.String(ev.Message)
			out = append(out, ev)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// backup takes a base backup now and answers with its record once it is
// stored. A client that goes away cancels it.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	sc, ok := s.source(w, r)
	if !ok {
		return
	}
	if state := s.state(r.Context(), sc.Name); !capturing(state) {
		writeError(w, http.StatusConflict, fmt.Errorf("source %s is %s; a base backup on demand needs it streaming", sc.Name, state))
		return
	}
	b, err := s.eng.BackupNow(r.Context(), sc.Name)
	if err != nil {
		code := http.StatusInternalServerError
		if r.Context().Err() != nil {
			code = http.StatusServiceUnavailable
			err = fmt.Errorf("cancelled (client gone or btfu stopping): %w", err)
		}
		writeError(w, code, fmt.Errorf("base backup of %s: %w", sc.Name, err))
		return
	}
	writeJSON(w, http.StatusOK, baseBackup(b))
}

// state is the source's live state, "unknown" if status fails.
func (s *Server) state(ctx context.Context, name string) string {
	st, err := s.eng.Status(ctx)
	if err != nil {
		return "unknown"
	}
	for _, ss := range st.Sources {
		if ss.Name == name {
			return ss.State
		}
	}
	return "unknown"
}

// Paused is the answer to pause and resume.
type Paused struct {
	Source string `json:"source"`
	Paused bool   `json:"paused"`
}

func (s *Server) pause(w http.ResponseWriter, r *http.Request) {
	sc, ok := s.source(w, r)
	if !ok {
		return
	}
	if err := s.eng.Pause(r.Context(), sc.Name); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("pause %s: %w", sc.Name, err))
		return
	}
	writeJSON(w, http.StatusOK, Paused{Source: sc.Name, Paused: true})
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request) {
	sc, ok := s.source(w, r)
	if !ok {
		return
	}
	if sc.Paused {
		writeError(w, http.StatusConflict, fmt.Errorf("source %s is paused in %s (paused = true); set paused = false there to resume it", sc.Name, s.eng.Config().Path))
		return
	}
	if err := s.eng.Resume(r.Context(), sc.Name); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("resume %s: %w", sc.Name, err))
		return
	}
	writeJSON(w, http.StatusOK, Paused{Source: sc.Name, Paused: false})
}
