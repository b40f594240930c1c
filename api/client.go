package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/btfu/btfu/config"
)

// ErrNotRunning: no btfu answers where the config says it would.
var ErrNotRunning = errors.New("btfu is not running")

// Client talks to a running btfu.
type Client struct {
	where string // for messages: the socket path or host:port
	base  string
	token string
	http  *http.Client
}

// Where is the socket path or TCP address the client talks to.
func (c *Client) Where() string { return c.where }

// Connect finds the btfu running with cfg: on its unix socket, else on
// its [api] listen address (sending the token). ErrNotRunning when
// neither answers.
func Connect(cfg *config.Config) (*Client, error) {
	c, err := Dial(cfg.SocketPath())
	if !errors.Is(err, ErrNotRunning) || cfg.API.Listen == "" {
		return c, err
	}
	return DialTCP(cfg.API.Listen, cfg.API.Token)
}

// Dial returns a client for the unix socket, or ErrNotRunning when
// nothing answers there.
func Dial(socket string) (*Client, error) {
	if socket == "" {
		return nil, ErrNotRunning
	}
	if _, err := os.Stat(socket); err != nil {
		return nil, ErrNotRunning
	}
	c, err := net.DialTimeout("unix", socket, time.Second)
	if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("btfu's control socket %s is not open to this user (mode 0600: only the user running btfu may connect); run this as that user", socket)
	}
	if err != nil {
		return nil, ErrNotRunning
	}
	c.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{where: socket, base: "http://btfu", http: &http.Client{Transport: tr}}, nil
}

// DialTCP returns a client for a TCP listen address (an unspecified host
// such as 0.0.0.0 is reached on loopback), or ErrNotRunning when nothing
// answers there. token, when set, is sent with every request.
func DialTCP(listen, token string) (*Client, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("api.listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	addr := net.JoinHostPort(host, port)
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, ErrNotRunning
	}
	c.Close()
	return &Client{where: addr, base: "http://" + addr, token: token, http: &http.Client{}}, nil
}

// Do sends a request and decodes a JSON answer into out (if not nil).
// Answers other than 2xx become errors carrying the server's message.
func (c *Client) Do(ctx context.Context, method, path string, out any) error {
	_, err := c.do(ctx, method, path, out)
	return err
}

// do is Do, also returning the status code.
func (c *Client) do(ctx context.Context, method, path string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return 0, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("btfu on %s: %w", c.where, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, fmt.Errorf("btfu on %s: %w", c.where, err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return resp.StatusCode, errors.New(e.Error)
		}
		return resp.StatusCode, fmt.Errorf("btfu on %s answered %s", c.where, resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return resp.StatusCode, fmt.Errorf("btfu on %s: %w", c.where, err)
		}
	}
	return resp.StatusCode, nil
}
