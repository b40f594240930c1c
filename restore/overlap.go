package restore

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// A set-based batch's statements (its DELETEs, UPDATEs and COPYs) keep
// the target busy for as long as reading and reducing the next batch
// takes. So they run on a goroutine while the replayer goes on
// (netPending), and the connection's next use waits for them first: every
// use goes through settledTx, which settles the pending batch (its count
// checked, or rolled back and applied one change at a time) before the
// statement. At most one batch is pending.
//
// Each batch runs in a savepoint (btfu_net). When its statements succeed,
// its goroutine releases it and opens the next batch's at once, in one
// round trip, so that a batch that follows directly starts with its
// statements (netSaved). When anything else runs in between, the next
// batch releases that savepoint and opens its own: there is never more
// than one btfu_net open.

// netPending is a batch whose statements are still running.
type netPending struct {
	b    netBuffer
	done chan netResult // the statements' result, once
}

type netResult struct {
	err error
	// fatal: the statements succeeded but the savepoints could not be
	// moved on (the connection failed): nothing to roll back to
	fatal bool
}

// settle waits for the pending batch and finishes it: the connection is
// about to be used for something other than the next batch.
func (p *replayer) settle(ctx context.Context) error {
	err := p.settleNet(ctx)
	p.netSaved = false
	return err
}

// settleNet waits for the pending batch and finishes it, leaving netSaved
// as the batch left it.
func (p *replayer) settleNet(ctx context.Context) error {
	pn := p.pendingNet
	if pn == nil {
		return nil
	}
	p.pendingNet = nil
	res := <-pn.done
	p.copied += p.overlapCopied
	if res.fatal {
		return res.err
	}
	p.netSaved = res.err == nil
	return p.finishNet(ctx, pn.b, res.err)
}

// abandon waits for the pending batch's COPY and drops its result: the
// target transaction is being rolled back.
func (p *replayer) abandon() {
	if pn := p.pendingNet; pn != nil {
		p.pendingNet = nil
		<-pn.done
		p.copied += p.overlapCopied
	}
}

// settledTx is the target transaction as replay uses it: settled before
// each statement. Conn is not settled: callers that use the connection
// directly settle first.
type settledTx struct {
	pgx.Tx
	p *replayer
}

func (t *settledTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.p.settle(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.Tx.Exec(ctx, sql, args...)
}

func (t *settledTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.p.settle(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Query(ctx, sql, args...)
}

func (t *settledTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.p.settle(ctx); err != nil {
		return errRow{err}
	}
	return t.Tx.QueryRow(ctx, sql, args...)
}

func (t *settledTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := t.p.settle(ctx); err != nil {
		return errBatch{err}
	}
	return t.Tx.SendBatch(ctx, b)
}

func (t *settledTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.p.settle(ctx); err != nil {
		return 0, err
	}
	return t.Tx.CopyFrom(ctx, table, cols, src)
}

func (t *settledTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.p.settle(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Prepare(ctx, name, sql)
}

func (t *settledTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.p.settle(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Begin(ctx)
}

func (t *settledTx) Commit(ctx context.Context) error {
	if err := t.p.settle(ctx); err != nil {
		t.p.abandon()
		_ = t.Tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	return t.Tx.Commit(ctx)
}

func (t *settledTx) Rollback(ctx context.Context) error {
	t.p.abandon()
	return t.Tx.Rollback(ctx)
}

// settled wraps a target transaction for replay.
func (p *replayer) settled(tx pgx.Tx) pgx.Tx {
	p.netOpen, p.netSaved = false, false
	return &settledTx{Tx: tx, p: p}
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

type errBatch struct{ err error }

func (b errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b errBatch) Query() (pgx.Rows, error)         { return nil, b.err }
func (b errBatch) QueryRow() pgx.Row                { return errRow(b) }
func (b errBatch) Close() error                     { return b.err }
func (b errBatch) Tx() pgx.Tx                       { return nil }
