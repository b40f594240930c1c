// Package api is btfu's local control API: the running engine answers on a
// unix socket (mode 0600) and, optionally, on TCP where clients other than
// loopback must send a bearer token.
//
//	GET  /health                          200 when every source streams within max_lag, else 503
//	GET  /metrics                         Prometheus text format
//	GET  /v1/sources                      engine.Status
//	GET  /v1/sources/{name}/coverage      ranges, base backups, segments
//	GET  /v1/events                       recent engine events
//	POST /v1/sources/{name}/backup        a base backup now (waits for it)
//	POST /v1/sources/{name}/pause|resume
//
// Errors are JSON {"error": "..."} with passwords masked.
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
	"strings"
	"sync"
	"time"

	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/store"
)

// Engine is what the API needs from the running engine.
type Engine interface {
	Status(ctx context.Context) (engine.Status, error)
	Coverage(ctx context.Context, name string) (coverage.Source, error)
	BackupNow(ctx context.Context, name string) (store.BaseBackup, error)
	Pause(ctx context.Context, name string) error
	Resume(ctx context.Context, name string) error
	RecentEvents() []engine.EventRecord
	Subscribe(ctx context.Context) <-chan engine.EventRecord
}

var _ Engine = (*engine.Engine)(nil)

// Server serves the API for one engine.
type Server struct {
	eng   Engine
	token string

	mu     sync.Mutex
	errors map[string]int64 // error-level events by category (kind prefix)
}

// New returns a server; token, when not empty, is required from clients
// that are not on loopback.
func New(eng Engine, token string) *Server {
	return &Server{eng: eng, token: token, errors: map[string]int64{}}
}

// countErrors counts error-level engine events for /metrics until ctx
// ends.
func (s *Server) countErrors(ctx context.Context) {
	for ev := range s.eng.Subscribe(ctx) {
		if ev.Level < slog.LevelError {
			continue
		}
		cat, _, _ := strings.Cut(ev.Kind, ".")
		s.mu.Lock()
		s.errors[cat]++
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
	mux.HandleFunc("POST /v1/sources/{name}/{action}", s.action)
	return s.auth(mux)
}

// auth requires the bearer token from TCP clients that are not loopback.
// Unix-socket clients are trusted through the socket's file mode.
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !trusted(r) {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if s.token == "" || !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="btfu"`)
				writeError(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token (api.token in config.toml)"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// trusted: unix socket (no address) or a loopback TCP client.
func trusted(r *http.Request) bool {
	if r.RemoteAddr == "" || r.RemoteAddr == "@" {
		return true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
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

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": redact.String(err.Error())})
}

// sourceError maps "no such source" to 404.
func sourceError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, store.ErrNotFound) || strings.Contains(err.Error(), "no source ") {
		code = http.StatusNotFound
	}
	writeError(w, code, err)
}

// health is 200 only when every source streams with nothing needing
// attention.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	st, err := s.eng.Status(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	type failing struct {
		Source string `json:"source"`
		State  string `json:"state"`
		Why    string `json:"why"`
	}
	var bad []failing
	for _, ss := range st.Sources {
		if ss.State != "streaming" || ss.Attention != "" {
			why := ss.Attention
			if why == "" {
				why = "not streaming (" + ss.State + ")"
			}
			bad = append(bad, failing{ss.Name, ss.State, why})
		}
	}
	if len(bad) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unhealthy", "failing": bad})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "sources": len(st.Sources)})
}

func (s *Server) sources(w http.ResponseWriter, r *http.Request) {
	st, err := s.eng.Status(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// Coverage is the JSON of GET /v1/sources/{name}/coverage.
type Coverage struct {
	Source       string                 `json:"source"`
	Ranges       []engine.CoverageRange `json:"ranges"`
	BaseBackups  []BaseBackup           `json:"base_backups"`
	Segments     int                    `json:"segments"`
	SegmentBytes int64                  `json:"segment_bytes"`
}

// BaseBackup is one base backup in Coverage.
type BaseBackup struct {
	Key           string    `json:"key"`
	Status        string    `json:"status"`
	ConsistentLSN string    `json:"consistent_lsn"`
	SnapshotTime  time.Time `json:"snapshot_time"`
	Bytes         int64     `json:"bytes"`
}

func (s *Server) coverage(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	cov, err := s.eng.Coverage(r.Context(), name)
	if err != nil {
		sourceError(w, err)
		return
	}
	out := Coverage{Source: name, Ranges: []engine.CoverageRange{}, BaseBackups: []BaseBackup{}, Segments: len(cov.Segments)}
	for _, rg := range cov.Ranges {
		out.Ranges = append(out.Ranges, engine.CoverageRange{FromLSN: rg.FromLSN.String(), ToLSN: rg.ToLSN.String(), FromTime: rg.FromTime, ToTime: rg.ToTime})
	}
	for _, b := range cov.Bases {
		out.BaseBackups = append(out.BaseBackups, BaseBackup{Key: b.ArtifactKey, Status: b.Status, ConsistentLSN: b.ConsistentLSN.String(), SnapshotTime: b.SnapshotTime, Bytes: b.SizeBytes})
	}
	for _, g := range cov.Segments {
		out.SegmentBytes += g.StoredBytes
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.eng.RecentEvents())
}

func (s *Server) action(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	var err error
	var body any
	switch action {
	case "backup":
		var b store.BaseBackup
		b, err = s.eng.BackupNow(r.Context(), name)
		body = BaseBackup{Key: b.ArtifactKey, Status: b.Status, ConsistentLSN: b.ConsistentLSN.String(), SnapshotTime: b.SnapshotTime, Bytes: b.SizeBytes}
	case "pause":
		err = s.eng.Pause(r.Context(), name)
		body = map[string]string{"source": name, "paused": "true"}
	case "resume":
		err = s.eng.Resume(r.Context(), name)
		body = map[string]string{"source": name, "paused": "false"}
	default:
		writeError(w, http.StatusNotFound, fmt.Errorf("unknown action %q; use backup, pause or resume", action))
		return
	}
	if err != nil {
		if strings.Contains(err.Error(), "paused in") {
			writeError(w, http.StatusConflict, err)
			return
		}
		sourceError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, body)
}
