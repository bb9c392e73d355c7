package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/ncruces/go-sqlite3"
	"gorm.io/gorm"
)

// IsUnavailable reports whether err says the database cannot do the work
// right now, whatever the work was: it is down, unreachable, shutting down,
// out of disk, memory or connections, read-only, or busy past its bound.
// Such an error is an outage, not the fault of the message or request that
// met it: callers hold and retry (the queue), answer 503 (the API), and
// never fail a delivery or dead-letter a message for it.
//
// It decides by the error's class, never by asking the database again: a
// database whose disk is full still answers pings.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return unavailableSQLState(pg.Code)
	}
	// *sqlite3.Error, and the bare (extended) codes the driver also
	// returns, all convert to their primary code.
	var lite sqlite3.ErrorCode
	if errors.As(err, &lite) {
		switch lite {
		case sqlite3.BUSY, sqlite3.LOCKED, sqlite3.FULL, sqlite3.IOERR, sqlite3.READONLY,
			sqlite3.NOMEM, sqlite3.CANTOPEN, sqlite3.PROTOCOL:
			return true
		}
		return false
	}
	var connect *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connect), errors.As(err, &netErr):
		return true
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		// pgx's "conn closed": a statement on a connection pgx already
		// closed after the server went away (database/sql hands it out
		// inside a transaction it holds, or before it notices).
		errors.Is(err, pgconn.ErrConnClosed),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ENOSPC):
		return true
	}
	return false
}

// MaybeCommitted reports whether a write that failed with err may have
// committed all the same: the statement (in autocommit) or its COMMIT had
// reached PostgreSQL when the connection broke or the wait for the answer
// ended. Its caller cannot tell, so it must not report the write as failed
// to anything that would repeat it. An ERROR the server reported, a
// connection that never opened, a statement pgx says it never sent, and
// database/sql giving up before it had a connection are certain: nothing
// was committed. SQLite runs in this process; its errors are certain.
func MaybeCommitted(err error) bool {
	if err == nil {
		return false
	}
	var pg *pgconn.PgError
	var connect *pgconn.ConnectError
	var lite sqlite3.ErrorCode
	switch {
	case errors.As(err, &connect), errors.As(err, &lite),
		pgconn.SafeToRetry(err), errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		// gorm's translations of the server's (or SQLite's) refusals
		errors.Is(err, gorm.ErrDuplicatedKey), errors.Is(err, gorm.ErrForeignKeyViolated),
		errors.Is(err, gorm.ErrCheckConstraintViolated):
		return false
	case errors.As(err, &pg):
		// An ERROR aborted the statement and its transaction. A FATAL (or
		// PANIC) ended the session, which may have been after its commit
		// was durable (pg_terminate_backend, 57P01, is honoured once the
		// commit's critical section is over).
		sev := pg.SeverityUnlocalized
		if sev == "" {
			sev = pg.Severity
		}
		return sev == "FATAL" || sev == "PANIC"
	case pgconn.Timeout(err):
		return true // the statement was sent and its context ended before the answer
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false // database/sql's wait for a connection ended: nothing was sent
	}
	// A broken connection mid-statement (EOF, reset) and anything else
	// unknown: the commit may have happened.
	return true
}

// unavailableSQLState reports whether a PostgreSQL SQLSTATE is one of the
// classes that say "the server cannot do this now" rather than "this
// statement is wrong":
//
//	08xxx connection exception (lost, refused, failed)
//	53xxx insufficient resources (disk full, out of memory, too many connections)
//	57Pxx operator intervention (shutting down, crash recovery, starting up)
//	58030 I/O error (the server could not read or write its files)
//	25006 read-only transaction (a standby, or writes switched off by an operator)
//	55P03 lock not available (a lock wait past lock_timeout: busy)
func unavailableSQLState(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"), strings.HasPrefix(code, "53"), strings.HasPrefix(code, "57P"):
		return true
	case code == "58030", code == "25006", code == "55P03":
		return true
	}
	return false
}

// DefaultOutageHold is how long Outage keeps reporting an unavailability
// error when nothing has written since: long enough to span the consumer's
// and the workers' retry intervals, short enough that an idle instance is
// ready again soon after the database recovered.
const DefaultOutageHold = 30 * time.Second

// Outage remembers the latest error that said the database cannot commit,
// so /readyz goes not-ready during an outage a ping does not see (a full
// disk, a read-only or busy database still answers pings). The next
// successful write clears it; so does hold without a new such error, so an
// instance that has nothing to write (a load balancer stopped sending it
// requests) does not stay not-ready after the database recovered.
//
// As a gorm plugin it sees every statement's error; the callers that commit
// transactions (the queue consumer, the HTTP edge) report commit errors,
// which no statement callback sees, with Observe.
type Outage struct {
	hold time.Duration
	now  func() time.Time

	mu    sync.Mutex
	err   error
	since time.Time // first error of this outage
	last  time.Time // latest error
}

// NewOutage returns an Outage that forgets an error hold after the latest
// one. now is the clock (time.Now when nil).
func NewOutage(hold time.Duration, now func() time.Time) *Outage {
	if now == nil {
		now = time.Now
	}
	if hold <= 0 {
		hold = DefaultOutageHold
	}
	return &Outage{hold: hold, now: now}
}

// Observe records err when it is an unavailability error and reports
// whether it was. Other errors (and nil) change nothing: a bad statement
// says nothing about the database.
func (o *Outage) Observe(err error) bool {
	if !IsUnavailable(err) {
		return false
	}
	now := o.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil || now.Sub(o.last) > o.hold {
		o.since = now
	}
	o.err, o.last = err, now
	return true
}

// Recovered clears the recorded error: a write has committed.
func (o *Outage) Recovered() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.err = nil
}

// Check returns the recorded unavailability error, if one was seen within
// hold and no write has succeeded since; /readyz reports it.
func (o *Outage) Check(context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil || o.now().Sub(o.last) > o.hold {
		return nil
	}
	return fmt.Errorf("writes failing since %s: %w", o.since.UTC().Format(time.RFC3339), o.err)
}

// Name implements gorm.Plugin.
func (o *Outage) Name() string { return "notify:outage" }

// Initialize implements gorm.Plugin: after every statement, an
// unavailability error is recorded and a successful write clears it.
func (o *Outage) Initialize(db *gorm.DB) error {
	cb := db.Callback()
	for _, h := range []struct {
		op    string
		after func(name string, fn func(*gorm.DB)) error
		write bool
	}{
		{"create", cb.Create().After("gorm:create").Register, true},
		{"update", cb.Update().After("gorm:update").Register, true},
		{"delete", cb.Delete().After("gorm:delete").Register, true},
		{"raw", cb.Raw().After("gorm:raw").Register, true}, // db.Exec
		{"query", cb.Query().After("gorm:query").Register, false},
		{"row", cb.Row().After("gorm:row").Register, false},
	} {
		write := h.write
		if err := h.after("notify:outage:"+h.op, func(db *gorm.DB) {
			switch {
			case db.Error != nil:
				o.Observe(db.Error)
			case write:
				o.Recovered()
			}
		}); err != nil {
			return err
		}
	}
	return nil
}
