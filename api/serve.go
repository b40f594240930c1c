package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Listen opens the unix socket at path with mode 0600. A socket left by a
// btfu that died is replaced; one a live btfu answers on is refused.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another btfu is running on this metadata (it answers on %s); stop it first, or give this one another [metadata] path or [api] socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove the stale control socket %s: %w", path, err)
		}
	}
	// The socket is created 0600 from the start: no window where others
	// could connect.
	old := umask(0o177)
	l, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w (set [api] socket to another path, or \"off\")", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Listeners opens the unix socket (if socket != "") and the TCP address
// (if listen != ""). Open them before the engine starts: a live btfu on
// the same socket means the same metadata is already in use.
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

// Serve runs the API on ls until ctx ends, then closes them (and removes
// a unix socket file).
func (s *Server) Serve(ctx context.Context, ls []net.Listener) error {
	go s.countErrors(ctx)
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errc <- hs.Serve(l) }()
	}
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
	return first
}
