package delivery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// A claimed delivery carries a lease: the instance that holds it
// (lease_owner) and until when (lease_until, epoch ms). Claims and
// hand-offs set both; the renewer extends this instance's leases every
// dispatch.lease/3; Recover takes the deliveries in sending whose lease has
// expired, whoever held them. So a dead instance's deliveries come back
// within about one lease, and a send that takes long on a live instance is
// never taken from it: its lease keeps being renewed.

// newOwner returns an id for this process: the host, the pid and a random
// part, so a restart on the same host (even with the same pid, as in a
// container) is a new owner and its predecessor's leases simply expire.
func newOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

// Owner is the id this Dispatcher writes as lease_owner on the deliveries it
// claims.
func (d *Dispatcher) Owner() string { return d.owner }

// Claims is how many claim statements d has run: the hand-off's point is
// that a fresh delivery costs none (the dispatch tests count them).
func (d *Dispatcher) Claims() int64 { return d.claims.Load() }

// Lease is the owner and lease expiry the intake writes on
// the deliveries it hands off at now (epoch ms).
func (d *Dispatcher) Lease(now int64) (owner string, until int64) {
	return d.owner, now + d.cfg.Lease.Milliseconds()
}

// held is the set of deliveries this instance holds in memory: claimed or
// handed off, and not yet recorded. The renewer renews exactly these, so a
// row whose outcome could not be written is not kept alive by a live
// instance that has forgotten it: its lease expires and Recover takes it.
type held struct {
	mu  sync.Mutex
	ids map[int64]struct{}
	// until is when the leases of every held delivery last renewed expire
	// (epoch ms, 0 before the first renewal).
	until int64
}

func (h *held) add(batch []Claimed) {
	h.mu.Lock()
	if h.ids == nil {
		h.ids = make(map[int64]struct{}, len(batch))
	}
	for _, c := range batch {
		h.ids[c.ID] = struct{}{}
	}
	h.mu.Unlock()
}

func (h *held) remove(outs []outcome) {
	h.mu.Lock()
	for _, o := range outs {
		delete(h.ids, o.id)
	}
	h.mu.Unlock()
}

func (h *held) has(id int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.ids[id]
	return ok
}

func (h *held) list() []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]int64, 0, len(h.ids))
	for id := range h.ids {
		ids = append(ids, id)
	}
	return ids
}

// validUntil is when c's lease expires as far as this instance knows: its
// own expiry, or the last renewal's if later (the renewal covered it).
func (h *held) validUntil(c Claimed) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return max(c.LeaseUntil, h.until)
}

// renewLoop renews this instance's leases every dispatch.lease/3 until
// stop is closed, so two renewals in a row may fail before a lease expires.
func (d *Dispatcher) renewLoop(ctx context.Context, stop <-chan struct{}) {
	t := time.NewTicker(max(d.cfg.Lease/3, 10*time.Millisecond))
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.Lease/3)
		_, err := d.Renew(rctx)
		if err != nil {
		}
		cancel()
		switch {
		case err != nil:
			failures++
			if failures == 1 || failures%100 == 0 {
				d.log.WarnContext(ctx, "dispatch: cannot renew leases; other instances may take these deliveries when they expire",
					"error", err, "failures", failures)
			}
		case failures > 0:
			d.log.InfoContext(ctx, "dispatch: lease renewal recovered", "failures", failures)
			failures = 0
		}
	}
}

// Renew extends the lease of every delivery this instance holds to now +
// dispatch.lease, in one statement however many there are, and returns how
// many rows it extended. The renewer calls it; tests call it directly.
func (d *Dispatcher) Renew(ctx context.Context) (int64, error) {
	// until is taken before the list: a delivery claimed after the list
	// has a later expiry of its own (held.validUntil).
	until := d.now().UnixMilli() + d.cfg.Lease.Milliseconds()
	ids := d.held.list()
	if len(ids) == 0 {
		return 0, nil
	}
	doc, err := json.Marshal(ids)
	if err != nil {
		return 0, fmt.Errorf("dispatch: renew leases: %w", err)
	}
	q := `UPDATE deliveries SET lease_until = ?
WHERE status = 'sending' AND lease_owner = ? AND id IN (SELECT value FROM json_each(?))`
	if d.pg {
		// SKIP LOCKED: a held row that is locked is being recorded (its
		// outcome, by this instance's recorder) or taken by Recover (its
		// lease already lost). Waiting for it renewed nothing (the recorded
		// row is no longer sending) and, while it waited, this statement
		// held the locks of the rows it had renewed, which the next record
		// flush then waited for (pg_stat_statements over the binary
		// harness: renewals of up to 1.2 s, the flushes queued behind
		// them). A row skipped now is renewed by the next renewal, a third
		// of a lease later.
		q = `UPDATE deliveries SET lease_until = ? WHERE id IN (
  SELECT id FROM deliveries WHERE status = 'sending' AND lease_owner = ?
  AND id IN (SELECT CAST(json_array_elements_text(CAST(? AS json)) AS bigint))
  FOR UPDATE SKIP LOCKED)`
	}
	res := d.db.WithContext(ctx).Exec(q, until, d.owner, string(doc))
	if res.Error != nil {
		return 0, fmt.Errorf("dispatch: renew leases: %w", res.Error)
	}
	d.held.mu.Lock()
	d.held.until = until
	d.held.mu.Unlock()
	return res.RowsAffected, nil
}
