package capture

import (
	"context"
	"fmt"
	"time"

	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/stream"
)

// idleTimeMargin is subtracted from a keepalive's server time before it
// extends coverage: a transaction takes its commit timestamp just before
// its commit record is written and flushed, so one stamped slightly before
// the keepalive may not have been decoded yet. Coverage claims only what is
// certainly stored.
const idleTimeMargin = time.Second

// checkpoint owns a chain's durable cursor and the acknowledgement that
// lets the slot release WAL (DESIGN 3.1). The cursor moves only past what
// is stored and recorded: a segment once AddSegment has recorded it (which
// advances the chain's cursor in the same transaction), or an idle mark
// (the server had nothing more to send up to its WAL end) once nothing
// received before it is still waiting to be stored. The receiver
// acknowledges to the server exactly the position given here, and nothing
// beyond it.
type checkpoint struct {
	meta    store.Store
	chainID int64
	ack     func(stream.LSN) // the receiver's: reported in its next status
	cursor  stream.LSN       // what has been acknowledged
	idle    *stream.Event    // newest idle mark waiting for the open segment
}

// segmentStored moves the cursor to the end of a segment just recorded.
func (c *checkpoint) segmentStored(seg store.Segment) {
	if seg.EndLSN > c.cursor {
		c.cursor = seg.EndLSN
	}
	c.ack(c.cursor)
}

// markIdle takes an idle mark. With a segment pending (open, not yet
// stored) the mark waits for it (afterFlush); otherwise the chain's cursor
// is recorded at the server's WAL end and acknowledged at once.
func (c *checkpoint) markIdle(ctx context.Context, ev stream.Event, pending bool) error {
	if pending {
		c.idle = &ev
		return nil
	}
	return c.advanceIdle(ctx, ev)
}

// dataArrived drops a waiting idle mark: a transaction came after it, so
// the mark no longer says the open segment holds everything up to it.
func (c *checkpoint) dataArrived() { c.idle = nil }

// afterFlush applies the idle mark that waited for the segment just
// stored.
func (c *checkpoint) afterFlush(ctx context.Context) error {
	if c.idle == nil {
		return nil
	}
	ev := *c.idle
	c.idle = nil
	return c.advanceIdle(ctx, ev)
}

// discard forgets a waiting idle mark along with the open segment it
// waited for.
func (c *checkpoint) discard() { c.idle = nil }

func (c *checkpoint) advanceIdle(ctx context.Context, ev stream.Event) error {
	if ev.WALEnd <= c.cursor {
		return nil
	}
	if err := c.meta.AdvanceChain(ctx, c.chainID, ev.WALEnd, ev.ServerTime.Add(-idleTimeMargin)); err != nil {
		return fmt.Errorf("record idle position: %w", err)
	}
	c.cursor = ev.WALEnd
	c.ack(ev.WALEnd)
	return nil
}
