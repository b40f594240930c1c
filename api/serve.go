package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Listen opens the unix socket at path, mode 0600 from the start. A socket
// file left by a btfu that died is replaced; one that a live btfu answers
// on is refused, as is a path holding anything but a socket.
func Listen(path string) (net.Listener, error) {
	if len(path) >= maxSocketPath {
		return nil, fmt.Errorf("control socket %s: the path is %d bytes, too long for a unix socket (under %d); set [api] socket to a shorter path", path, len(path), maxSocketPath)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	old := umask(0o177)
	l, err := net.Listen("unix", path)
	umask(old)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, inUse(path)
	}
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w (set [api] socket to another path, or \"off\")", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return l, nil
}

func inUse(path string) error {
	return fmt.Errorf("another btfu is running on this metadata (it answers on %s); stop it first, or give this one another [metadata] path or [api] socket", path)
}

// removeStale removes a socket file nobody answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s: a %s is in the way, not a socket; move it, or set [api] socket to another path", path, kind(fi.Mode()))
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return inUse(path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		// Not refused (e.g. permission denied: another user's socket):
		// it may well be alive, so leave it.
		return fmt.Errorf("control socket %s exists and cannot be checked (%v); if no btfu uses it, remove it", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the stale control socket %s: %w", path, err)
	}
	return nil
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	}
	return "file of type " + m.Type().String()
}

// Listeners opens the unix socket (if socket != "") and the TCP address
// (if listen != ""). Open them before the engine starts: a live btfu on
// the same socket means this metadata is already in use.
func Listeners(socket, listen string) ([]net.Listener, error) {
	var ls []net.Listener
	if socket != "" {
		l, err := Listen(socket)
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
	}
	if listen != "" {
		l, err := net.Listen("tcp", listen)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, fmt.Errorf("api.listen %s: %w", listen, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// Start counts the engine's error events from now on and serves ls; it
// returns at once. When ctx ends the server stops (requests in flight get
// up to 5 s; a base backup in flight is cancelled with ctx), closes ls
// (removing the socket file) and the channel yields nil or the first
// listener failure.
func (s *Server) Start(ctx context.Context, ls []net.Listener) <-chan error {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	go s.countErrors(s.eng.Subscribe(ctx))
	logger := s.opts.Log
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hs := &http.Server{
		Handler:           s.Handler(),
		ErrorLog:          slog.NewLogLogger(logger.With("component", "api").Handler(), slog.LevelWarn),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnContext: func(c context.Context, conn net.Conn) context.Context {
			if conn.LocalAddr().Network() == "unix" {
				return context.WithValue(c, viaSocket{}, true)
			}
			return c
		},
	}
	errc := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errc <- hs.Serve(l) }()
	}
	done := make(chan error, 1)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		var first error
		for range ls {
			if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) && first == nil {
				first = err
			}
		}
		done <- first
	}()
	return done
}

// Serve is Start, waiting until the server has stopped.
func (s *Server) Serve(ctx context.Context, ls []net.Listener) error {
	return <-s.Start(ctx, ls)
}
