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
	mu sync.Mutex
	// until is, per held delivery, when its lease expires as far as this
	// instance knows (epoch ms): its claim's or hand-off's expiry, then
	// the expiry of the last renewal that extended that row. Per row, not
	// per renewal: a renewal skips rows (locked, or no longer this
	// instance's), and a row it skipped is not covered by it.
	until map[int64]int64
}

func (h *held) add(batch []Claimed) {
	h.mu.Lock()
	if h.until == nil {
		h.until = make(map[int64]int64, len(batch))
	}
	for _, c := range batch {
		h.until[c.ID] = c.LeaseUntil
	}
	h.mu.Unlock()
}

func (h *held) remove(outs []outcome) {
	h.mu.Lock()
	for _, o := range outs {
		delete(h.until, o.id)
	}
	h.mu.Unlock()
}

func (h *held) has(id int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.until[id]
	return ok
}

func (h *held) list() []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]int64, 0, len(h.until))
	for id := range h.until {
		ids = append(ids, id)
	}
	return ids
}

// renewed records that the leases of ids (those still held) now expire at
// until.
func (h *held) renewed(ids []int64, until int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range ids {
		if old, ok := h.until[id]; ok && until > old {
			h.until[id] = until
		}
	}
}

// validUntil is when c's lease expires as far as this instance knows: its
// own expiry, or its last renewal's if later.
func (h *held) validUntil(c Claimed) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return max(c.LeaseUntil, h.until[c.ID])
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
	until := d.now().UnixMilli() + d.cfg.Lease.Milliseconds()
	ids := d.held.list()
	if len(ids) == 0 {
		return 0, nil
	}
	doc, err := json.Marshal(ids)
	if err != nil {
		return 0, fmt.Errorf("dispatch: renew leases: %w", err)
	}
	// RETURNING: only the rows the statement extended count as renewed
	// (held.renewed); a row no longer this instance's (Recover moved it
	// while renewals failed) must not look renewed to the lease gate.
	q := `UPDATE deliveries SET lease_until = ?
WHERE status = 'sending' AND lease_owner = ? AND id IN (SELECT value FROM json_each(?)) RETURNING id`
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
  FOR UPDATE SKIP LOCKED) RETURNING id`
	}
	var renewed []int64
	// Find, not Scan: gorm's Scan renders the statement with its JSON
	// parameter inlined, for a trace it then discards, on every call.
	if err := d.db.WithContext(ctx).Raw(q, until, d.owner, string(doc)).Find(&renewed).Error; err != nil {
		return 0, fmt.Errorf("dispatch: renew leases: %w", err)
	}
	d.held.renewed(renewed, until)
	return int64(len(renewed)), nil
}
