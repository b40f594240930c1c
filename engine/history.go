package engine

import (
	"context"
	"sync"
	"time"
)

// sampleEvery and historyLen give the dashboard ten minutes of lag and
// throughput history.
var sampleEvery = 2 * time.Second

const historyLen = 300

// Sample is one reading of a source's worker.
type Sample struct {
	At            time.Time
	LagBytes      int64
	Transactions  int64 // cumulative, this run
	ReceivedBytes int64 // cumulative, this run
}

// history holds the recent samples of every source.
type history struct {
	mu      sync.Mutex
	samples map[string][]Sample
}

func (h *history) add(name string, s Sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.samples == nil {
		h.samples = map[string][]Sample{}
	}
	l := append(h.samples[name], s)
	if len(l) > historyLen {
		l = append(l[:0:0], l[len(l)-historyLen:]...)
	}
	h.samples[name] = l
}

func (h *history) get(name string) []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Sample(nil), h.samples[name]...)
}

// rates returns transactions/s and bytes/s over the last window of
// samples (30 s), 0 when there is not enough history.
func rates(ss []Sample, window time.Duration) (txPerSec, bytesPerSec float64) {
	if len(ss) < 2 {
		return 0, 0
	}
	last := ss[len(ss)-1]
	first := ss[0]
	for i := len(ss) - 2; i >= 0; i-- {
		first = ss[i]
		if last.At.Sub(ss[i].At) >= window {
			break
		}
	}
	d := last.At.Sub(first.At).Seconds()
	if d <= 0 || last.Transactions < first.Transactions {
		return 0, 0 // a worker restarted: its counters began again
	}
	return float64(last.Transactions-first.Transactions) / d, float64(last.ReceivedBytes-first.ReceivedBytes) / d
}

// sample reads every running worker on an interval until ctx ends. It
// only reads in-memory status: the streaming path never waits for it.
func (e *Engine) sample(ctx context.Context) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		e.mu.Lock()
		rs := make(map[string]*runner, len(e.runners))
		for n, r := range e.runners {
			rs[n] = r
		}
		e.mu.Unlock()
		now := time.Now()
		for name, r := range rs {
			w := r.getWorker()
			if w == nil {
				continue
			}
			ws := w.Status()
			s := Sample{At: now, Transactions: ws.Transactions, ReceivedBytes: ws.ReceivedBytes}
			if ws.SourceLSN > ws.FlushedLSN {
				s.LagBytes = int64(ws.SourceLSN - ws.FlushedLSN)
			}
			e.hist.add(name, s)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
