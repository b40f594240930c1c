package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// ErrNotRunning: no btfu answers on the socket.
var ErrNotRunning = errors.New("btfu is not running")

// Client talks to a running btfu over its unix socket.
type Client struct {
	socket string
	http   *http.Client
}

// Dial returns a client for the socket, or ErrNotRunning when nothing
// answers there.
func Dial(socket string) (*Client, error) {
	if socket == "" {
		return nil, ErrNotRunning
	}
	if _, err := os.Stat(socket); err != nil {
		return nil, ErrNotRunning
	}
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return nil, ErrNotRunning
	}
	c.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{socket: socket, http: &http.Client{Transport: tr}}, nil
}

// Do sends a request and decodes a JSON answer into out (if not nil).
// Non-2xx answers become errors carrying the server's message.
func (c *Client) Do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://btfu"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("btfu on %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("btfu answered %s", resp.Status)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}
