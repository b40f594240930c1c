package engine

import (
	"context"
	"log/slog"
	"sync"
	"time"
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

// Event kinds the engine defines (the capture worker's are in package
// capture's calls to notify).
const (
	// EventRetentionRefused: retention kept a base backup the policy alone
	// would delete (the only one of the chain that reaches now), or its
	// own check refused a plan.
	EventRetentionRefused = "retention.refused"
)

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
