package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/smtp"
	"net/textproto"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/redact"
)

// SignatureHeader carries a webhook body's HMAC-SHA256 with the channel's
// secret, as "sha256=<hex>".
const SignatureHeader = "X-Btfu-Signature-256"

// Sender delivers a message over one channel.
type Sender interface {
	Send(ctx context.Context, m Message) error
	// Describe names the channel for logs and btfu notify test, without
	// secrets: "ops-slack (slack, https://hooks.slack.com)".
	Describe() string
}

// NewSender builds the sender of a checked channel.
func NewSender(ch config.Channel) (Sender, error) {
	switch ch.Kind {
	case config.ChannelWebhook, config.ChannelSlack:
		return &webSender{ch: ch, client: &http.Client{Timeout: 15 * time.Second}}, nil
	case config.ChannelEmail:
		s := &mailSender{ch: ch}
		if ch.CAFile != "" {
			pem, err := os.ReadFile(ch.CAFile)
			if err != nil {
				return nil, fmt.Errorf("notify.channel.%s.ca_file: %w", ch.Name, err)
			}
			s.roots = x509.NewCertPool()
			if !s.roots.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("notify.channel.%s.ca_file: %s holds no PEM certificate", ch.Name, ch.CAFile)
			}
		}
		return s, nil
	}
	return nil, fmt.Errorf("notify.channel.%s.kind: %q is not a channel kind", ch.Name, ch.Kind)
}

// SafeURL shows where a URL points without what may be a secret: scheme
// and host only (Slack's and many webhooks' paths hold their token).
func SafeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(url)"
	}
	return u.Scheme + "://" + u.Host
}

// statusError is an HTTP endpoint's answer other than 2xx.
type statusError struct {
	Code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// permanent marks a failure that retrying will not fix (the endpoint
// refused the request).
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// Permanent reports whether err will not go away by retrying.
func Permanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

type webSender struct {
	ch     config.Channel
	client *http.Client
}

func (s *webSender) Describe() string {
	return fmt.Sprintf("%s (%s, %s)", s.ch.Name, s.ch.Kind, SafeURL(s.ch.URL))
}

// WebhookBody is the JSON a webhook channel posts.
type WebhookBody struct {
	Kind       string            `json:"kind"`
	Source     string            `json:"source,omitempty"`
	Level      string            `json:"level"`
	Title      string            `json:"title"`
	Message    string            `json:"message"`
	At         time.Time         `json:"at"`
	Recovered  bool              `json:"recovered"`
	Since      *time.Time        `json:"since,omitempty"`
	Suppressed int               `json:"suppressed"`
	Host       string            `json:"host,omitempty"`
	Attrs      map[string]string `json:"attrs,omitempty"`
}

// SlackBody is what a Slack incoming webhook takes.
type SlackBody struct {
	Text string `json:"text"`
}

func (s *webSender) Send(ctx context.Context, m Message) error {
	var body []byte
	var err error
	if s.ch.Kind == config.ChannelSlack {
		body, err = json.Marshal(SlackBody{Text: slackText(m)})
	} else {
		wb := WebhookBody{Kind: string(m.Kind), Source: m.Source, Level: m.Level, Title: m.Title, Message: m.Text, At: m.At.UTC(),
			Recovered: m.Recovered, Suppressed: m.Suppressed, Host: m.Host, Attrs: m.Attrs}
		if !m.Since.IsZero() {
			t := m.Since.UTC()
			wb.Since = &t
		}
		body, err = json.Marshal(wb)
	}
	if err != nil {
		return permanent{err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ch.URL, bytes.NewReader(body))
	if err != nil {
		return permanent{fmt.Errorf("POST %s: bad URL", SafeURL(s.ch.URL))}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "btfu")
	if s.ch.Secret != "" {
		mac := hmac.New(sha256.New, []byte(s.ch.Secret))
		mac.Write(body)
		req.Header.Set(SignatureHeader, "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text holds the whole URL
		}
		return fmt.Errorf("POST %s: %s", SafeURL(s.ch.URL), redact.String(err.Error()))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = &statusError{Code: resp.StatusCode, msg: fmt.Sprintf("POST %s: %s: %s", SafeURL(s.ch.URL), resp.Status, redact.String(strings.TrimSpace(string(snippet))))}
	if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return permanent{err}
	}
	return err
}

func slackText(m Message) string {
	icon := map[string]string{"error": ":red_circle:", "warn": ":warning:", "info": ":information_source:"}[m.Level]
	if m.Recovered {
		icon = ":large_green_circle:"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s *%s*\n%s", icon, m.Subject(), m.Text)
	if f := m.footer(); f != "" {
		fmt.Fprintf(&b, "\n_%s_", f)
	}
	return b.String()
}

type mailSender struct {
	ch    config.Channel
	roots *x509.CertPool // nil: the system's
}

func (s *mailSender) Describe() string {
	return fmt.Sprintf("%s (email, %s, %s)", s.ch.Name, s.ch.SMTP, s.ch.TLS)
}

func (s *mailSender) Send(ctx context.Context, m Message) error {
	host, _, err := net.SplitHostPort(s.ch.SMTP)
	if err != nil {
		return permanent{err}
	}
	tlsCfg := &tls.Config{ServerName: host, RootCAs: s.roots, MinVersion: tls.VersionTLS12}
	d := &net.Dialer{Timeout: 15 * time.Second}
	var conn net.Conn
	if s.ch.TLS == config.TLSImplicit {
		conn, err = (&tls.Dialer{NetDialer: d, Config: tlsCfg}).DialContext(ctx, "tcp", s.ch.SMTP)
	} else {
		conn, err = d.DialContext(ctx, "tcp", s.ch.SMTP)
	}
	if err != nil {
		return fmt.Errorf("connect to %s: %w", s.ch.SMTP, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("SMTP %s: %w", s.ch.SMTP, err)
	}
	defer c.Close()
	if err := c.Hello(localName()); err != nil {
		return fmt.Errorf("SMTP %s: EHLO: %w", s.ch.SMTP, err)
	}
	if s.ch.TLS != config.TLSImplicit {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return permanent{fmt.Errorf("SMTP %s does not offer STARTTLS; btfu never sends mail in plain text (for implicit TLS, usually port 465, set tls = \"tls\")", s.ch.SMTP)}
		}
		if err := c.StartTLS(tlsCfg); err != nil {
			return fmt.Errorf("SMTP %s: STARTTLS: %w", s.ch.SMTP, err)
		}
	}
	if s.ch.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return permanent{fmt.Errorf("SMTP %s offers no AUTH, but username is set", s.ch.SMTP)}
		}
		if err := c.Auth(smtp.PlainAuth("", s.ch.Username, s.ch.Password, host)); err != nil {
			return smtpErr(fmt.Sprintf("SMTP %s: AUTH", s.ch.SMTP), err)
		}
	}
	if err := c.Mail(s.ch.From); err != nil {
		return smtpErr(fmt.Sprintf("SMTP %s: MAIL FROM", s.ch.SMTP), err)
	}
	for _, to := range s.ch.To {
		if err := c.Rcpt(to); err != nil {
			return smtpErr(fmt.Sprintf("SMTP %s: RCPT TO %s", s.ch.SMTP, to), err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return smtpErr(fmt.Sprintf("SMTP %s: DATA", s.ch.SMTP), err)
	}
	if _, err := w.Write(s.message(m)); err != nil {
		return fmt.Errorf("SMTP %s: DATA: %w", s.ch.SMTP, err)
	}
	if err := w.Close(); err != nil {
		return smtpErr(fmt.Sprintf("SMTP %s: DATA", s.ch.SMTP), err)
	}
	return c.Quit()
}

// smtpErr marks a 5xx reply permanent.
func smtpErr(what string, err error) error {
	err = fmt.Errorf("%s: %w", what, err) // texts are redacted where they are shown
	var te *textproto.Error
	if errors.As(err, &te) && te.Code/100 == 5 {
		return permanent{err}
	}
	return err
}

// message renders m as an RFC 5322 message in UTF-8 text.
func (s *mailSender) message(m Message) []byte {
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", s.ch.From)
	hdr("To", strings.Join(s.ch.To, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", "[btfu] "+m.Subject()))
	hdr("Date", m.At.Format(time.RFC1123Z))
	hdr("Message-ID", fmt.Sprintf("<btfu.%d.%s@%s>", m.At.UnixNano(), strings.ReplaceAll(string(m.Kind), ".", "-"), localName()))
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "8bit")
	hdr("X-Btfu-Kind", string(m.Kind))
	b.WriteString("\r\n")
	b.WriteString(strings.ReplaceAll(m.Text, "\n", "\r\n"))
	b.WriteString("\r\n")
	if f := m.footer(); f != "" {
		b.WriteString("\r\n-- \r\n" + f + "\r\n")
	}
	return b.Bytes()
}

func localName() string {
	h, err := os.Hostname()
	if err != nil || h == "" || strings.ContainsAny(h, " \r\n") {
		return "localhost"
	}
	return h
}

// Hint says what to check after a failed delivery.
func Hint(err error) string {
	if err == nil {
		return ""
	}
	var te *textproto.Error
	var ce *tls.CertificateVerificationError
	var ue x509.UnknownAuthorityError
	var ne net.Error
	var se *statusError
	msg := err.Error()
	switch {
	case errors.As(err, &ce), errors.As(err, &ue), strings.Contains(msg, "certificate"):
		return "the server's certificate is not trusted: set ca_file to the PEM of the CA that signed it, or check the host name"
	case errors.As(err, &te) && (te.Code == 535 || te.Code == 534 || te.Code == 530):
		return "the SMTP server refused the login: check username and password (password_file)"
	case errors.As(err, &te) && te.Code/100 == 5:
		return "the SMTP server refused the message: check from and to (may this account send as from?)"
	case strings.Contains(msg, "STARTTLS") || strings.Contains(msg, "no AUTH"):
		return "check tls (\"starttls\" on port 587, \"tls\" on port 465) and the port"
	// An HTTP status by its code, never by digits in the message: a port
	// such as 40389 holds "403".
	case errors.As(err, &se) && (se.Code == 401 || se.Code == 403):
		return "the endpoint refused the request: check the URL's token and the secret"
	case errors.As(err, &se) && (se.Code == 404 || se.Code == 410):
		return "no such endpoint: check the URL (a Slack webhook that was removed answers 404)"
	case errors.As(err, &se) && se.Code/100 == 5:
		return "the endpoint failed (5xx): btfu retries with backoff; check the service"
	case strings.Contains(msg, "connection refused"):
		return "nothing listens there: check the host and port, and that the service is up"
	case strings.Contains(msg, "no such host"):
		return "the host name does not resolve: check it"
	case errors.As(err, &ne) && ne.Timeout(), strings.Contains(msg, "timeout"), strings.Contains(msg, "deadline"):
		return "no answer in time: a firewall, a proxy, or the wrong port?"
	}
	return "check the channel's settings in config.toml"
}
