package delivery

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The statements that join a batch of delivery ids to deliveries (claim,
// record) run on PostgreSQL as one-shot statements,
// planned for their arguments at every run, instead of as prepared
// statements.
//
// A prepared statement switches to a generic plan after five runs and keeps
// it. A generic plan made while deliveries was small joins the batch with a
// sequential scan, and it stays one as the table grows: in the queue
// benchmark (docs/benchmarks.md) records of 86 to 314 outcomes each read all
// 5,570 pages of the 100,000-row table, and with the outcomes as one JSON
// parameter nearly every record did. Planning each run costs a little
// latency (steady p50 2-3 ms higher, measured) and keeps the plan
// right for the table's current size; the driver still caches each
// statement's description, so a run stays one round trip
// (pgx.QueryExecModeCacheDescribe). Other statements keep their prepared
// plans. These statements bypass gorm's callbacks, tracing's statement spans
// among them; they run in a worker's context, which has no recording span,
// so they never made one (docs/observability.md).

// oneShotQuery runs q (with ? placeholders) and scans every row into dest.
func (d *Dispatcher) oneShotQuery(ctx context.Context, dest *[]Claimed, q string, args []any) error {
	if !d.pg {
		// Find, not Scan: gorm's Scan renders the statement with its
		// arguments inlined (for a trace it then discards) on every call.
		return d.db.WithContext(ctx).Raw(q, args...).Find(dest).Error
	}
	sqlDB, err := d.db.DB()
	if err != nil {
		return err
	}
	rows, err := sqlDB.QueryContext(ctx, dollars(q), oneShotArgs(args)...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var c Claimed
		if err := rows.Scan(&c.ID, &c.NotificationID, &c.CollectionID, &c.ActionID, &c.RecipientIndex,
			&c.Channel, &c.Recipient, &c.Attempts, &c.CreatedTime, &c.DigestDeliveryID, &c.TraceParent); err != nil {
			return errors.Join(err, rows.Close())
		}
		*dest = append(*dest, c)
	}
	return errors.Join(rows.Err(), rows.Close())
}

// oneShotExec runs q (with ? placeholders) and returns how many rows it
// changed.
func (d *Dispatcher) oneShotExec(ctx context.Context, q string, args []any) (int64, error) {
	if !d.pg {
		res := d.db.WithContext(ctx).Exec(q, args...)
		return res.RowsAffected, res.Error
	}
	sqlDB, err := d.db.DB()
	if err != nil {
		return 0, err
	}
	res, err := sqlDB.ExecContext(ctx, dollars(q), oneShotArgs(args)...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// oneShotArgs puts the execution mode first: pgx's database/sql driver
// takes a leading pgx.QueryExecMode as the mode for that statement.
func oneShotArgs(args []any) []any {
	return append([]any{pgx.QueryExecModeCacheDescribe}, args...)
}

// dollars numbers q's ? placeholders as PostgreSQL's $1, $2, …; gorm does
// this for the statements it runs. The dispatch statements have no ? of
// their own: every value, text included, is a parameter.
func dollars(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] != '?' {
			b.WriteByte(q[i])
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}
