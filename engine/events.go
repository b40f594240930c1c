package engine

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/btfu/btfu/capture"
	"github.com/btfu/btfu/internal/human"
	"github.com/btfu/btfu/notify"
	"github.com/btfu/btfu/notify/kind"
)

// EventRecord is one engine event as consumers see it: the TUI's log
// screen and banners, the control API.
type EventRecord struct {
	At      time.Time         `json:"at"`
	Source  string            `json:"source,omitempty"`
	Level   slog.Level        `json:"level"`
	Kind    string            `json:"kind"`
	Message string            `json:"message"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}

// watchEvery is how often the engine compares each source's lag with
// max_lag and its retained WAL with its budget.
var watchEvery = 5 * time.Second

// notifyGrace is how long messages still queued at shutdown may take.
var notifyGrace = 5 * time.Second

// Notifier is the engine's notifier: [[notify.channel]] of the current
// configuration, fed with every event while the engine runs.
func (e *Engine) Notifier() *notify.Notifier {
	e.events.mu.Lock()
	defer e.events.mu.Unlock()
	if e.events.notifier == nil {
		e.events.notifier = notify.New(e.Config, notify.Options{Log: e.log})
	}
	return e.events.notifier
}

// NotificationStats counts each channel's messages since btfu started.
func (e *Engine) NotificationStats() []notify.ChannelStats { return e.Notifier().Stats() }

// runNotifications feeds the notifier with the engine's events and
// watches lag and retained WAL, until stop: then queued messages get
// notifyGrace to go. Delivery never makes the engine wait (package
// notify); the subscription's queue is the broker's, never blocking
// publish.
func (e *Engine) runNotifications(ctx context.Context) (stop func()) {
	n := e.Notifier()
	subCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	evs := e.Subscribe(subCtx)
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		for ev := range evs {
			n.Offer(notify.Event{At: ev.At, Source: ev.Source, Level: ev.Level, Kind: ev.Kind, Message: ev.Message, Attrs: ev.Attrs})
		}
	}()
	watched := make(chan struct{})
	go func() { defer close(watched); e.watch(ctx) }()
	return func() {
		<-watched
		cancel()
		<-fed
		n.Close(notifyGrace)
		e.events.mu.Lock()
		e.events.notifier = nil // a later Run starts a new one
		e.events.mu.Unlock()
	}
}

// watch publishes lag.over_max / lag.recovered and slot.wal_ok for the
// running sources until ctx ends.
func (e *Engine) watch(ctx context.Context) {
	over := map[string]bool{}    // source -> lag over max_lag
	walHigh := map[string]bool{} // source -> retained WAL at the warning level
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		for name, r := range e.snapshotRunners() {
			w := r.getWorker()
			if w == nil {
				over[name], walHigh[name] = false, false // paused or stopped: not capture's lag
				continue
			}
			ws := w.Status()
			src := map[string]string{"source": name}
			maxLag := r.cfg.MaxLag.D()
			if !ws.FlushedAt.IsZero() && maxLag > 0 {
				age := now.Sub(ws.FlushedAt)
				switch {
				case age > maxLag && !over[name]:
					over[name] = true
					e.Event(ctx, w.SourceID, levelWarn, kind.LagOverMax, fmt.Sprintf("source %s: the newest stored change is %s old, over max_lag %s (state %s): capture is stalled or behind",
						name, age.Round(time.Second), r.cfg.MaxLag, ws.State), src)
				case age <= maxLag && over[name]:
					over[name] = false
					e.Event(ctx, w.SourceID, levelInfo, kind.LagRecovered, fmt.Sprintf("source %s: the newest stored change is %s old, within max_lag %s again", name, age.Round(time.Second), r.cfg.MaxLag), src)
				}
			}
			if ws.WALBudget > 0 && ws.RetainedBytes >= 0 {
				switch {
				case float64(ws.RetainedBytes) >= capture.WALWarnFraction*float64(ws.WALBudget):
					walHigh[name] = true
				case ws.RetainedBytes < ws.WALBudget/2 && walHigh[name]:
					walHigh[name] = false
					e.Event(ctx, w.SourceID, levelInfo, kind.SlotWALOK, fmt.Sprintf("slot %s of source %s holds %s of WAL, under half its budget %s again",
						r.cfg.Slot, name, human.Bytes(ws.RetainedBytes), human.Bytes(ws.WALBudget)), src)
				}
			}
		}
	}
}

// recentEvents is how many events the engine keeps in memory for
// consumers that attach late (the TUI's log screen).
const recentEvents = 500

// broker fans events out to subscribers. Publishing never blocks: each
// subscriber has its own unbounded queue, drained by its own goroutine.
// Events are rare (state changes, backups, failures; never per change), so
// nothing is dropped.
type broker struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	recent []EventRecord

	notifier *notify.Notifier // while the engine runs; see Notifier
}

type subscriber struct {
	mu     sync.Mutex
	queue  []EventRecord
	notify chan struct{}
}

func (b *broker) publish(ev EventRecord) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recent = append(b.recent, ev)
	if len(b.recent) > recentEvents {
		b.recent = append(b.recent[:0:0], b.recent[len(b.recent)-recentEvents:]...)
	}
	for s := range b.subs {
		s.mu.Lock()
		s.queue = append(s.queue, ev)
		s.mu.Unlock()
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

// Subscribe returns a channel of every event published from now on, in
// order, until ctx ends (then the channel is closed). A slow reader delays
// only itself.
func (e *Engine) Subscribe(ctx context.Context) <-chan EventRecord {
	s := &subscriber{notify: make(chan struct{}, 1)}
	b := &e.events
	b.mu.Lock()
	if b.subs == nil {
		b.subs = map[*subscriber]struct{}{}
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	out := make(chan EventRecord)
	go func() {
		defer close(out)
		defer func() {
			b.mu.Lock()
			delete(b.subs, s)
			b.mu.Unlock()
		}()
		for {
			s.mu.Lock()
			batch := s.queue
			s.queue = nil
			s.mu.Unlock()
			for _, ev := range batch {
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-s.notify:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// RecentEvents returns up to the last 500 events, oldest first.
func (e *Engine) RecentEvents() []EventRecord {
	e.events.mu.Lock()
	defer e.events.mu.Unlock()
	return append([]EventRecord(nil), e.events.recent...)
}
