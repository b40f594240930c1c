// Package notify sends engine events to people: webhooks (JSON, signed
// with HMAC-SHA256), Slack incoming webhooks and email (SMTP with
// STARTTLS or implicit TLS), configured as [[notify.channel]] in
// config.toml.
//
// The engine publishes events; a Notifier is fed them (Offer) and never
// makes the engine wait: deduplication is a map lookup, and each channel
// has its own bounded queue drained by its own goroutine, which retries a
// failed delivery with backoff. A full queue drops the message, counted
// and logged. A dead endpoint therefore delays only its own channel.
//
// Problems (package kind) are deduplicated per kind and source: the first
// event of an outage is sent, repeats within the quiet period are counted
// (and named in the next message), and the event that clears it sends one
// "recovered" message, only when the user was told of the outage. A
// problem still there after the quiet period is sent again as a reminder.
//
// Nothing logged or sent names a secret: URLs show scheme and host only,
// texts go through package redact.
package notify

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/redact"
)

// Event is an engine event as the notifier takes it.
type Event struct {
	At      time.Time
	Source  string // "" for engine-wide events
	Level   slog.Level
	Kind    string
	Message string
	Attrs   map[string]string
}

// Message is what a channel delivers.
type Message struct {
	Kind   kind.Kind // for a recovery, the problem that cleared
	Source string
	Level  string // "error", "warn", "info"
	Title  string
	Text   string
	At     time.Time
	// Recovered: the problem Kind cleared; Text is the event that cleared
	// it, Since when the outage began.
	Recovered bool
	Since     time.Time
	// Suppressed counts events of this problem not sent since the last
	// message about it (quiet period).
	Suppressed int
	Host       string
	Attrs      map[string]string
}

// Subject is the message's one-line summary.
func (m Message) Subject() string {
	title := m.Title
	if m.Recovered {
		title = "recovered: " + title
	}
	if m.Source != "" {
		return m.Source + ": " + title
	}
	return title
}

// footer says where the message comes from and what was not sent.
func (m Message) footer() string {
	var parts []string
	if m.Host != "" {
		parts = append(parts, "btfu on "+m.Host)
	}
	parts = append(parts, m.At.UTC().Format("2006-01-02 15:04:05Z"))
	switch {
	case m.Recovered && !m.Since.IsZero():
		parts = append(parts, "after "+m.At.Sub(m.Since).Round(time.Second).String())
	case !m.Since.IsZero():
		parts = append(parts, "still so since "+m.Since.UTC().Format("2006-01-02 15:04:05Z"))
	}
	if m.Suppressed > 0 {
		parts = append(parts, fmt.Sprintf("%d similar event(s) not sent (quiet period)", m.Suppressed))
	}
	return strings.Join(parts, " · ")
}

// Options tune a Notifier; zero values take the defaults.
type Options struct {
	Log *slog.Logger
	// Now is the clock (quiet periods); default time.Now.
	Now func() time.Time
	// Attempts per message (default 5), the first retry Backoff later
	// (default 2s), doubling up to MaxBackoff (default 1m).
	Attempts   int
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Timeout of one attempt (default 30s).
	Timeout time.Duration
	// QueueSize per channel (default 100).
	QueueSize int
}

// ChannelStats counts one channel's messages since btfu started.
type ChannelStats struct {
	Channel string
	Kind    string
	Sent    int64 // delivered
	Failed  int64 // given up after the last attempt
	Dropped int64 // its queue was full
}

// Notifier turns events into messages and delivers them. Its channels
// follow the configuration cfg returns (reloads apply at the next event).
type Notifier struct {
	cfg  func() *config.Config
	opts Options
	host string

	mu       sync.Mutex
	notify   *config.Notify // what channels were built from
	channels []*channel
	outages  map[outageKey]*outage
	stats    map[string]*ChannelStats
	closed   bool
	wg       sync.WaitGroup
	abort    context.Context // cancelled when Close's grace is over
	abortFn  context.CancelFunc
}

type outageKey struct {
	kind   kind.Kind
	source string
}

type outage struct {
	open       bool
	told       bool // a message about it was sent (so a recovery is)
	since      time.Time
	lastSent   time.Time
	suppressed int
}

type channel struct {
	cfg    config.Channel
	sender Sender
	queue  chan Message
}

// New returns a notifier over the channels of cfg(). Close stops it.
func New(cfg func() *config.Config, opts Options) *Notifier {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 5
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 2 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = time.Minute
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 100
	}
	n := &Notifier{cfg: cfg, opts: opts, host: localName(), outages: map[outageKey]*outage{}, stats: map[string]*ChannelStats{}}
	n.abort, n.abortFn = context.WithCancel(context.Background())
	return n
}

// Offer takes an event; it never blocks. Events of kinds btfu does not
// notify about are ignored.
func (n *Notifier) Offer(ev Event) {
	k := kind.Kind(ev.Kind)
	info, ok := kind.Lookup(k)
	if !ok {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.syncLocked()
	now := n.opts.Now()
	base := Message{Kind: k, Source: ev.Source, Level: levelName(ev.Level), Title: info.Title, Text: redact.String(ev.Message),
		At: now, Host: n.host, Attrs: redactAttrs(ev.Attrs)}
	if !ev.At.IsZero() {
		base.At = ev.At
	}
	var out []Message
	recovered := false
	for _, p := range info.Recovers {
		o := n.outages[outageKey{p, ev.Source}]
		if o == nil || !o.open {
			continue
		}
		o.open = false
		if o.told {
			pi, _ := kind.Lookup(p)
			m := base
			m.Kind, m.Title, m.Recovered, m.Since, m.Suppressed, m.Level = p, pi.Title, true, o.since, o.suppressed, "info"
			out = append(out, m)
			recovered = true
			o.suppressed = 0
		}
		o.told = false
	}
	switch {
	case info.Problem:
		key := outageKey{k, ev.Source}
		o := n.outages[key]
		if o == nil {
			o = &outage{}
			n.outages[key] = o
		}
		if !o.open {
			o.open, o.since, o.told = true, now, false
		}
		if o.lastSent.IsZero() || now.Sub(o.lastSent) >= n.quiet(k) {
			m := base
			m.Suppressed = o.suppressed
			if o.told {
				m.Since = o.since // a reminder: still failing
			}
			out = append(out, m)
			o.lastSent, o.told, o.suppressed = now, true, 0
		} else {
			o.suppressed++
		}
	case info.Alone && !recovered:
		out = append(out, base)
	}
	for _, m := range out {
		n.fanOut(m)
	}
}

// quiet is the quiet period of kind k.
func (n *Notifier) quiet(k kind.Kind) time.Duration {
	c := n.notify
	if d, ok := c.QuietPeriods[string(k)]; ok {
		return d.D()
	}
	return c.QuietPeriod.D()
}

// fanOut queues m on every channel that takes it; callers hold mu.
func (n *Notifier) fanOut(m Message) {
	for _, c := range n.channels {
		if !kind.Matches(c.cfg.Events, m.Kind) {
			continue
		}
		if m.Source != "" && len(c.cfg.Sources) > 0 && !contains(c.cfg.Sources, m.Source) {
			continue
		}
		select {
		case c.queue <- m:
		default:
			n.stats[c.cfg.Name].Dropped++
			n.opts.Log.Warn("notification dropped: the channel's queue is full (its endpoint is slow or down)",
				"channel", c.sender.Describe(), "kind", string(m.Kind), "source", m.Source, "queue", cap(c.queue))
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// syncLocked (re)builds the channels when [notify] changed; callers hold
// mu. Channels that go finish their queue in the background.
func (n *Notifier) syncLocked() {
	cfg := n.cfg()
	if cfg == nil {
		return
	}
	if n.notify != nil && reflect.DeepEqual(*n.notify, cfg.Notify) {
		return
	}
	nc := cfg.Notify
	n.notify = &nc
	for _, c := range n.channels {
		close(c.queue)
	}
	n.channels = nil
	for _, cc := range nc.Channels {
		s, err := NewSender(cc)
		if err != nil {
			n.opts.Log.Error("notification channel not started", "channel", cc.Name, "err", err)
			continue
		}
		c := &channel{cfg: cc, sender: s, queue: make(chan Message, n.opts.QueueSize)}
		if n.stats[cc.Name] == nil {
			n.stats[cc.Name] = &ChannelStats{Channel: cc.Name, Kind: cc.Kind}
		}
		n.channels = append(n.channels, c)
		n.wg.Add(1)
		go n.run(c)
	}
}

// run delivers c's queue until it is closed.
func (n *Notifier) run(c *channel) {
	defer n.wg.Done()
	for m := range c.queue {
		n.deliver(c, m)
	}
}

// deliver tries m until it is sent, fails for good, or Close's grace ends.
func (n *Notifier) deliver(c *channel, m Message) {
	wait := n.opts.Backoff
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(n.abort, n.opts.Timeout)
		err := c.sender.Send(ctx, m)
		cancel()
		if err == nil {
			n.count(c, func(s *ChannelStats) { s.Sent++ })
			n.opts.Log.Info("notification sent", "channel", c.sender.Describe(), "kind", string(m.Kind), "source", m.Source, "recovered", m.Recovered)
			return
		}
		last := attempt >= n.opts.Attempts || Permanent(err) || n.abort.Err() != nil
		if last {
			n.count(c, func(s *ChannelStats) { s.Failed++ })
			n.opts.Log.Warn("notification failed", "channel", c.sender.Describe(), "kind", string(m.Kind), "source", m.Source,
				"attempts", attempt, "err", redact.String(err.Error()), "hint", Hint(err))
			return
		}
		n.opts.Log.Debug("notification attempt failed; retrying", "channel", c.sender.Describe(), "attempt", attempt, "in", wait, "err", redact.String(err.Error()))
		select {
		case <-time.After(wait):
		case <-n.abort.Done():
		}
		wait = min(2*wait, n.opts.MaxBackoff)
	}
}

func (n *Notifier) count(c *channel, f func(*ChannelStats)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f(n.stats[c.cfg.Name])
}

// Stats returns each channel's counters, by name.
func (n *Notifier) Stats() []ChannelStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	all := map[string]ChannelStats{}
	if cfg := n.cfg(); cfg != nil {
		for _, c := range cfg.Notify.Channels {
			all[c.Name] = ChannelStats{Channel: c.Name, Kind: c.Kind}
		}
	}
	for name, s := range n.stats {
		all[name] = *s
	}
	out := make([]ChannelStats, 0, len(all))
	for _, s := range all {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Channel < out[j].Channel })
	return out
}

// Close stops taking events and gives queued messages up to grace to be
// delivered; then attempts in flight are abandoned (counted failed).
func (n *Notifier) Close(grace time.Duration) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	for _, c := range n.channels {
		close(c.queue)
	}
	n.channels = nil
	n.mu.Unlock()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		n.abortFn()
		<-done
	}
	n.abortFn()
}

func levelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "error"
	case l >= slog.LevelWarn:
		return "warn"
	}
	return "info"
}

func redactAttrs(a map[string]string) map[string]string {
	if len(a) == 0 {
		return nil
	}
	out := make(map[string]string, len(a))
	for k, v := range a {
		out[k] = redact.String(v)
	}
	return out
}

// TestResult is one channel's answer to btfu notify test.
type TestResult struct {
	Channel  string // the channel's description (no secrets)
	Err      error
	Hint     string
	Duration time.Duration
}

// SendTest sends a test message on every channel of cfg, or only the one
// named, once each, and says how each went.
func SendTest(ctx context.Context, cfg *config.Config, name string) ([]TestResult, error) {
	var out []TestResult
	found := false
	for _, cc := range cfg.Notify.Channels {
		if name != "" && cc.Name != name {
			continue
		}
		found = true
		s, err := NewSender(cc)
		if err != nil {
			out = append(out, TestResult{Channel: cc.Name, Err: err, Hint: "fix the channel in config.toml"})
			continue
		}
		info, _ := kind.Lookup(kind.Test)
		m := Message{Kind: kind.Test, Level: "info", Title: info.Title, At: time.Now(), Host: localName(),
			Text: fmt.Sprintf("btfu can reach channel %s. Real messages say when capture fails or stalls, the WAL guard acts, lag passes max_lag, a base backup or restore fails, and when it recovers.", cc.Name)}
		start := time.Now()
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = s.Send(tctx, m)
		cancel()
		out = append(out, TestResult{Channel: s.Describe(), Err: err, Hint: Hint(err), Duration: time.Since(start)})
	}
	if !found {
		var names []string
		for _, cc := range cfg.Notify.Channels {
			names = append(names, cc.Name)
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("%s has no [[notify.channel]]; add one (see config.toml.example)", cfg.Path)
		}
		return nil, fmt.Errorf("no channel %q in %s; configured: %s", name, cfg.Path, strings.Join(names, ", "))
	}
	return out, nil
}
