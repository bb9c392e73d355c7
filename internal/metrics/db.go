package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
)

// RegisterDB adds the gauges read from the database at scrape time: the
// outbox backlog (pending count, age of the oldest pending row, parked
// count), deliveries by channel and status, and the retry queue (deliveries
// pending again after a failed attempt). All instances share the database,
// so every instance reports the same values; aggregate them with max, not
// sum. A reading is reused for metrics.dbCacheTTL, the counts of the final
// delivery statuses (a scan of the table) for metrics.finalStatusTTL, and
// each query is bounded by metrics.dbTimeout; when a query fails,
// notify_metrics_db_up is 0 and the gauges are left out of that scrape
// rather than reported stale.
//
// It also adds the connection pool's own statistics (client_golang's
// DBStatsCollector, go_sql_*{db_name="notificationservice"}): connections
// open, in use and idle against database.maxOpenConns, and how often and how
// long a statement waited for a free connection, which is how a pool too
// small for the workers and the API together shows (docs/runbook.md).
func (m *Metrics) RegisterDB(db *gorm.DB, cfg config.Metrics, log *slog.Logger) error {
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("metrics: connection pool: %w", err)
	}
	if err := m.reg.Register(collectors.NewDBStatsCollector(sqlDB, PoolName)); err != nil {
		return err
	}
	return m.reg.Register(newDBCollector(db, cfg, log, time.Now))
}

// PoolName is the db_name label of the connection pool's go_sql_* series.
const PoolName = "notificationservice"

type dbCollector struct {
	db      *gorm.DB
	timeout time.Duration
	ttl     time.Duration
	log     *slog.Logger
	now     func() time.Time

	up, outboxPending, outboxOldest, outboxParked, deliveries, retryDepth *prometheus.Desc

	// channels and statuses are reported even when no row has them (at 0),
	// so an alert on, say, the retry queue of sms sees a series from the
	// start; values the database has beyond them are reported as well.
	channels, statuses []string

	// finalTTL is metrics.finalStatusTTL: how long the counts of the
	// final statuses (a scan of the whole table) are reused.
	finalTTL time.Duration
	// active are the statuses read at every reading (activeSQL's, which
	// names them as literals), through the partial indexes that hold them;
	// every other status is final (finalSQL).
	active []string

	mu     sync.Mutex
	last   dbReading
	readAt time.Time
	// final are the counts of the last reading of the final statuses, at
	// finalAt; finalOK is false when that reading failed, and until the
	// next one the final statuses are left out of the scrape.
	final   []channelStatusCount
	finalAt time.Time
	finalOK bool
}

// dbReading is one set of database values.
type dbReading struct {
	err              error
	outboxPending    int64
	outboxOldestMS   int64 // created_at of the oldest pending row; 0 when none
	outboxParked     int64
	deliveries       []channelStatusCount // the active statuses, then the final ones (when finalOK)
	finalOK          bool
	retryByChannel   []channelStatusCount
	readAtUnixMillis int64
}

type channelStatusCount struct {
	Channel string
	Status  string
	N       int64
}

func newDBCollector(db *gorm.DB, cfg config.Metrics, log *slog.Logger, now func() time.Time) *dbCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &dbCollector{
		db: db, timeout: cfg.DBTimeout, ttl: cfg.DBCacheTTL, finalTTL: cfg.FinalStatusTTL, log: log, now: now,
		active:        []string{dispatch.StatusPending, dispatch.StatusScheduled, dispatch.StatusSending},
		up:            d("metrics_db_up", "1 when the last database reading for the gauges below succeeded, else 0."),
		outboxPending: d("outbox_pending", "Envelopes waiting to be published (neither published nor parked)."),
		outboxOldest:  d("outbox_oldest_pending_age_seconds", "Age of the oldest pending envelope; 0 when none is pending."),
		outboxParked:  d("outbox_parked", "Envelopes set aside as unpublishable, waiting for an operator (replay API)."),
		deliveries:    d("deliveries", "Deliveries in the database by channel and current status.", "channel", "status"),
		retryDepth:    d("retry_queue_depth", "Deliveries pending again after a failed attempt (status pending, attempts > 0), by channel.", "channel"),
		channels:      []string{channels.ChannelEmail, channels.ChannelSMS, channels.ChannelPush},
		// scheduled is its own series, not part of pending: pending is work
		// due now (the backlog an operator scales for), scheduled is work
		// due later by design (sendAt, delay), which may be millions of rows.
		statuses: []string{dispatch.StatusPending, dispatch.StatusScheduled, dispatch.StatusSending, dispatch.StatusSent, dispatch.StatusDelivered,
			dispatch.StatusBounced, dispatch.StatusFailed, dispatch.StatusSkipped, dispatch.StatusCanceled},
	}
}

// Describe sends every descriptor.
func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.outboxPending, c.outboxOldest, c.outboxParked, c.deliveries, c.retryDepth} {
		ch <- d
	}
}

// Collect reads the database (or reuses a fresh enough reading) and sends
// the gauges.
func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.reading()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if r.err != nil {
		g(c.up, 0)
		return
	}
	g(c.up, 1)
	g(c.outboxPending, float64(r.outboxPending))
	age := 0.0
	if r.outboxOldestMS > 0 {
		age = max(0, float64(r.readAtUnixMillis-r.outboxOldestMS)/1000)
	}
	g(c.outboxOldest, age)
	g(c.outboxParked, float64(r.outboxParked))
	type key struct{ channel, status string }
	deliveries := make(map[key]int64, len(r.deliveries))
	for _, d := range r.deliveries {
		deliveries[key{d.Channel, d.Status}] = d.N
	}
	retry := make(map[string]int64, len(r.retryByChannel))
	for _, d := range r.retryByChannel {
		retry[d.Channel] = d.N
	}
	for _, ch := range c.channels {
		for _, st := range c.statuses {
			if !r.finalOK && !slices.Contains(c.active, st) {
				continue // left out, not reported as 0, while its reading fails
			}
			k := key{ch, st}
			g(c.deliveries, float64(deliveries[k]), ch, st)
			delete(deliveries, k)
		}
		g(c.retryDepth, float64(retry[ch]), ch)
		delete(retry, ch)
	}
	for _, d := range r.deliveries {
		if n, ok := deliveries[key{d.Channel, d.Status}]; ok {
			g(c.deliveries, float64(n), d.Channel, d.Status)
		}
	}
	for _, d := range r.retryByChannel {
		if n, ok := retry[d.Channel]; ok {
			g(c.retryDepth, float64(n), d.Channel)
		}
	}
}

func (c *dbCollector) reading() dbReading {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.readAt.IsZero() && c.ttl > 0 && now.Sub(c.readAt) < c.ttl {
		return c.last
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	r := c.read(ctx)
	if r.err == nil {
		c.readFinal(now, &r)
	}
	r.readAtUnixMillis = now.UnixMilli()
	if r.err != nil {
		c.log.Warn("metrics: database gauges unavailable", "error", r.err)
	}
	c.last, c.readAt = r, now
	return r
}

// activeSQL counts the deliveries in the active statuses, each arm through
// the partial index that holds its rows (deliveries_waiting_idx,
// deliveries_lease_idx on PostgreSQL), so its cost follows the backlog, not
// the table. The statuses are literals, not parameters: a generic plan of a
// prepared statement cannot prove a partial index's predicate from a
// parameter, and scans the table.
const activeSQL = `SELECT channel, status, COUNT(*) AS n FROM deliveries WHERE status IN ('pending', 'scheduled') GROUP BY channel, status
UNION ALL SELECT channel, status, COUNT(*) AS n FROM deliveries WHERE status = 'sending' GROUP BY channel, status`

// finalSQL counts the deliveries in every other status: a scan of the table.
const finalSQL = `SELECT channel, status, COUNT(*) AS n FROM deliveries
WHERE status NOT IN ('pending', 'scheduled', 'sending') GROUP BY channel, status ORDER BY channel, status`

// readFinal adds the counts of the final statuses to r, read again when
// the last reading of them is metrics.finalStatusTTL old. Their query is a
// scan of the whole deliveries table: on 2,000,000 rows (744 MB) it took
// 0.58-1.05 s of PostgreSQL's time, at every dbCacheTTL of every instance
// when it was read with the active statuses (docs/observability.md). A
// failed reading fails r (up is 0), and is not retried before the TTL
// either: a scan that outgrows metrics.dbTimeout would otherwise run, and
// time out, at every reading.
func (c *dbCollector) readFinal(now time.Time, r *dbReading) {
	if c.finalAt.IsZero() || now.Sub(c.finalAt) >= c.finalTTL {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		c.final, c.finalOK = nil, false
		c.finalAt = now
		if err := c.db.WithContext(ctx).Raw(finalSQL).Scan(&c.final).Error; err != nil {
			r.err = fmt.Errorf("deliveries in final statuses: %w", err)
			return
		}
		c.finalOK = true
	}
	r.finalOK = c.finalOK
	if c.finalOK {
		r.deliveries = append(r.deliveries, c.final...)
	}
}

func (c *dbCollector) read(ctx context.Context) dbReading {
	var r dbReading
	db := c.db.WithContext(ctx)
	var pending struct{ N int64 }
	if err := db.Raw(`SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL AND parked_at IS NULL`).Scan(&pending).Error; err != nil {
		r.err = fmt.Errorf("outbox pending: %w", err)
		return r
	}
	r.outboxPending = pending.N
	// The relay publishes in id order, so the lowest pending id is the
	// oldest; the partial pending index answers this without a scan.
	var oldest []int64
	if err := db.Raw(`SELECT created_at FROM outbox WHERE published_at IS NULL AND parked_at IS NULL ORDER BY id LIMIT 1`).Scan(&oldest).Error; err != nil {
		r.err = fmt.Errorf("outbox oldest: %w", err)
		return r
	}
	if len(oldest) == 1 {
		r.outboxOldestMS = oldest[0]
	}
	var parked struct{ N int64 }
	if err := db.Raw(`SELECT COUNT(*) AS n FROM outbox WHERE parked_at IS NOT NULL`).Scan(&parked).Error; err != nil {
		r.err = fmt.Errorf("outbox parked: %w", err)
		return r
	}
	r.outboxParked = parked.N
	if err := db.Raw(activeSQL).Scan(&r.deliveries).Error; err != nil {
		r.err = fmt.Errorf("deliveries: %w", err)
		return r
	}
	if err := db.Raw(`SELECT channel, COUNT(*) AS n FROM deliveries WHERE status = 'pending' AND attempts > 0 GROUP BY channel ORDER BY channel`).Scan(&r.retryByChannel).Error; err != nil {
		r.err = fmt.Errorf("retry queue: %w", err)
		return r
	}
	return r
}
