// Package smtptest runs a small real SMTP server on loopback for tests:
// EHLO, STARTTLS (or implicit TLS) with a self-signed certificate, AUTH
// PLAIN checked against one user, MAIL, RCPT, DATA, RSET, NOOP, QUIT. It
// records every message it accepts.
package smtptest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mode is how the server does TLS.
type Mode int

const (
	// StartTLS: plain at first, STARTTLS offered; AUTH only after it.
	StartTLS Mode = iota
	// Implicit: TLS from the first byte (port 465 style).
	Implicit
	// Plain: no TLS at all (to test that clients refuse it).
	Plain
)

// Message is one accepted message.
type Message struct {
	From string
	To   []string
	Data string // as received, dot-unstuffed, CRLF line ends
	User string // the authenticated user, "" without AUTH
	TLS  bool   // the session was encrypted when the message was sent
}

// Server is a running SMTP server.
type Server struct {
	Addr string // 127.0.0.1:port
	// CAFile is a PEM file of the server's self-signed certificate, for
	// clients to trust.
	CAFile string

	user, pass string
	tlsConf    *tls.Config
	mode       Mode
	ln         net.Listener

	mu       sync.Mutex
	messages []Message
	arrived  chan struct{}
	authFail int
}

// Start runs a server until the test ends. With user set, AUTH PLAIN must
// succeed with user and pass before MAIL.
func Start(t testing.TB, mode Mode, user, pass string) *Server {
	t.Helper()
	cert, certPEM := selfSigned(t)
	s := &Server{user: user, pass: pass, mode: mode, arrived: make(chan struct{}, 100),
		tlsConf: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	s.CAFile = filepath.Join(t.TempDir(), "smtptest-ca.pem")
	if err := os.WriteFile(s.CAFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if mode == Implicit {
		ln = tls.NewListener(ln, s.tlsConf)
	}
	s.ln, s.Addr = ln, ln.Addr().String()
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); s.serve(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return s
}

// Messages returns the messages accepted so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// AuthFailures counts rejected AUTH attempts.
func (s *Server) AuthFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authFail
}

// Wait returns once n messages have arrived, failing the test after
// timeout.
func (s *Server) Wait(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if m := s.Messages(); len(m) >= n {
			return m
		}
		select {
		case <-s.arrived:
		case <-deadline:
			t.Fatalf("smtptest: %d message(s) after %s, want %d", len(s.Messages()), timeout, n)
		}
	}
}

type session struct {
	conn   net.Conn
	r      *bufio.Reader
	w      *bufio.Writer
	tls    bool
	helo   bool
	user   string
	from   string
	to     []string
	server *Server
}

func (s *Server) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	ss := &session{conn: c, r: bufio.NewReader(c), w: bufio.NewWriter(c), tls: s.mode == Implicit, server: s}
	ss.reply(220, "localhost smtptest ready")
	for {
		line, err := ss.r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			ss.helo = true
			lines := []string{"localhost greets " + arg}
			if s.mode == StartTLS && !ss.tls {
				lines = append(lines, "STARTTLS")
			}
			if ss.tls && s.user != "" {
				lines = append(lines, "AUTH PLAIN")
			}
			lines = append(lines, "8BITMIME")
			ss.multi(250, lines)
		case "HELO":
			ss.helo = true
			ss.reply(250, "localhost")
		case "STARTTLS":
			if s.mode != StartTLS || ss.tls {
				ss.reply(502, "5.5.1 STARTTLS not available")
				continue
			}
			ss.reply(220, "2.0.0 ready to start TLS")
			tc := tls.Server(c, s.tlsConf)
			if err := tc.Handshake(); err != nil {
				return
			}
			ss.conn, ss.r, ss.w, ss.tls = tc, bufio.NewReader(tc), bufio.NewWriter(tc), true
			ss.helo, ss.user, ss.from, ss.to = false, "", "", nil // RFC 3207: start over
		case "AUTH":
			ss.auth(arg)
		case "MAIL":
			switch {
			case !ss.helo:
				ss.reply(503, "5.5.1 EHLO first")
			case s.user != "" && ss.user == "":
				ss.reply(530, "5.7.0 authentication required")
			default:
				ss.from, ss.to = addr(arg), nil
				ss.reply(250, "2.1.0 ok")
			}
		case "RCPT":
			if ss.from == "" {
				ss.reply(503, "5.5.1 MAIL first")
				continue
			}
			ss.to = append(ss.to, addr(arg))
			ss.reply(250, "2.1.5 ok")
		case "DATA":
			if len(ss.to) == 0 {
				ss.reply(503, "5.5.1 RCPT first")
				continue
			}
			ss.reply(354, "end with <CRLF>.<CRLF>")
			data, err := ss.readData()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.messages = append(s.messages, Message{From: ss.from, To: ss.to, Data: data, User: ss.user, TLS: ss.tls})
			s.mu.Unlock()
			select {
			case s.arrived <- struct{}{}:
			default:
			}
			ss.from, ss.to = "", nil
			ss.reply(250, "2.0.0 queued")
		case "RSET":
			ss.from, ss.to = "", nil
			ss.reply(250, "2.0.0 ok")
		case "NOOP":
			ss.reply(250, "2.0.0 ok")
		case "QUIT":
			ss.reply(221, "2.0.0 bye")
			return
		default:
			ss.reply(502, "5.5.2 command not recognized")
		}
	}
}

func (ss *session) auth(arg string) {
	s := ss.server
	mech, ir, _ := strings.Cut(arg, " ")
	if !strings.EqualFold(mech, "PLAIN") || s.user == "" || !ss.tls {
		ss.reply(504, "5.5.4 unrecognized authentication type")
		return
	}
	if ir == "" {
		ss.reply(334, "")
		line, err := ss.r.ReadString('\n')
		if err != nil {
			return
		}
		ir = strings.TrimRight(line, "\r\n")
	}
	raw, err := base64.StdEncoding.DecodeString(ir)
	parts := strings.Split(string(raw), "\x00")
	if err != nil || len(parts) != 3 || parts[1] != s.user || parts[2] != s.pass {
		s.mu.Lock()
		s.authFail++
		s.mu.Unlock()
		ss.reply(535, "5.7.8 authentication credentials invalid")
		return
	}
	ss.user = parts[1]
	ss.reply(235, "2.7.0 authentication successful")
}

func (ss *session) readData() (string, error) {
	var b strings.Builder
	for {
		line, err := ss.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if line == ".\r\n" || line == ".\n" {
			return b.String(), nil
		}
		b.WriteString(strings.TrimPrefix(line, "."))
	}
}

func (ss *session) reply(code int, text string) {
	fmt.Fprintf(ss.w, "%d %s\r\n", code, text)
	ss.w.Flush()
}

func (ss *session) multi(code int, lines []string) {
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		fmt.Fprintf(ss.w, "%d%s%s\r\n", code, sep, l)
	}
	ss.w.Flush()
}

// addr takes the address out of "FROM:<a@b>" or "TO:<a@b> SIZE=…".
func addr(arg string) string {
	if i := strings.Index(arg, "<"); i >= 0 {
		if j := strings.Index(arg[i:], ">"); j >= 0 {
			return arg[i+1 : i+j]
		}
	}
	_, a, _ := strings.Cut(arg, ":")
	return strings.TrimSpace(a)
}

// selfSigned makes a certificate for 127.0.0.1 and localhost that is its
// own CA.
func selfSigned(t testing.TB) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "smtptest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return cert, certPEM
}
