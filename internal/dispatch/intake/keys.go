package intake

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"

	"github.com/notificationservice/notificationservice/internal/dispatch"

	"gorm.io/gorm"
)

// claimKeys is the dedupe. The first notification of each keyed
// submission (ordinal 0) carries its key and request hash, and is inserted
// here, before anything else of the batch, with ON CONFLICT DO NOTHING on
// the unique (intake_scope, idempotency_key, ordinal): the submissions whose
// row went in are fresh, and nothing else can claim their keys until this
// transaction ends (a concurrent insert of the same key waits for it, then
// finds the row). Keyless submissions are fresh. For a key seen before, the
// submission's outcome is set here: a replay of the first result when the
// request hash matches, else a conflict; and so for a key repeated in the
// batch, against the batch's first.
func (in *Intake) claimKeys(ctx context.Context, tx *gorm.DB, b *batch) error {
	var firsts []*planned
	firstOf := map[int]*dispatch.NotificationRecord{} // keyed submission → its ordinal-0 note
	for _, p := range b.notes {
		if e := b.subs[p.sub]; e.Key == "" {
			e.fresh = true
		} else if p.note.Ordinal == 0 {
			firsts = append(firsts, p)
			firstOf[p.sub] = p.note
		}
	}
	if len(firsts) > 0 {
		// A stable order keeps two batches that share keys from deadlocking.
		sort.Slice(firsts, func(a, b int) bool {
			x, y := firsts[a].note, firsts[b].note
			return x.IntakeScope < y.IntakeScope || x.IntakeScope == y.IntakeScope && x.IdempotencyKey < y.IdempotencyKey
		})
		byKey := make(map[[2]string]*dispatch.NotificationRecord, len(firsts))
		for _, p := range firsts {
			byKey[[2]string{p.note.IntakeScope, p.note.IdempotencyKey}] = p.note
		}
		// WHERE true: SQLite needs it to parse ON CONFLICT after a SELECT.
		conflict := " WHERE true ON CONFLICT (intake_scope, idempotency_key, ordinal) WHERE idempotency_key <> '' DO NOTHING" +
			" RETURNING id, intake_scope, idempotency_key"
		if err := in.insertNotes(ctx, tx, firsts, conflict, func(r *sql.Rows) error {
			var id int64
			var k [2]string
			if err := r.Scan(&id, &k[0], &k[1]); err != nil {
				return err
			}
			n := byKey[k]
			if n == nil {
				return fmt.Errorf("RETURNING an unknown key %q/%q", k[0], k[1])
			}
			n.ID = id
			return nil
		}); err != nil {
			return fmt.Errorf("insert keyed notifications: %w", err)
		}
	}
	var seenBefore [][2]string
	for i, note := range firstOf {
		if note.ID != 0 {
			b.subs[i].fresh = true
		} else {
			seenBefore = append(seenBefore, [2]string{note.IntakeScope, note.IdempotencyKey})
		}
	}
	earlier, err := in.firstResults(ctx, tx, seenBefore)
	if err != nil {
		return err
	}
	for i, e := range b.subs {
		if e.Key == "" {
			continue
		}
		f := b.subs[e.first]
		switch {
		case e.first == i && e.fresh:
		case f.fresh: // repeated in the batch: against the batch's first
			if e.hash == f.hash {
				e.outcome.Replayed = true
			} else {
				e.outcome.Conflict = true
			}
		default:
			r, ok := earlier[[2]string{e.scope(), e.Key}]
			switch {
			case !ok:
				return fmt.Errorf("intake key %q/%q neither inserted nor found", e.scope(), e.Key)
			case r.hash != e.hash:
				e.outcome.Conflict = true
			default:
				e.outcome.Replayed = true
				e.outcome.Notifications = r.notes
			}
		}
	}
	return nil
}

// firstResult is what a key accepted earlier created.
type firstResult struct {
	hash  string
	notes []Summary
}

// firstResults reads the notifications of keys accepted before, in order,
// with the request hash their first one carries.
func (in *Intake) firstResults(ctx context.Context, tx *gorm.DB, keys [][2]string) (map[[2]string]firstResult, error) {
	out := map[[2]string]firstResult{}
	for len(keys) > 0 {
		n := min(len(keys), 200)
		var conds []string
		var args []any
		for _, k := range keys[:n] {
			conds = append(conds, "(intake_scope = ? AND idempotency_key = ?)")
			args = append(args, k[0], k[1])
		}
		keys = keys[n:]
		var notes []dispatch.NotificationRecord
		// idempotency_key <> '': the unique index's predicate, so that the
		// planner may use it.
		if err := tx.WithContext(ctx).Select("id, intake_scope, idempotency_key, ordinal, request_hash, name, status, reason, delivery_count, skipped_count").
			Where("idempotency_key <> '' AND ("+strings.Join(conds, " OR ")+")", args...).
			Order("ordinal").Find(&notes).Error; err != nil {
			return nil, fmt.Errorf("read notifications of keys seen before: %w", err)
		}
		for i := range notes {
			k := [2]string{notes[i].IntakeScope, notes[i].IdempotencyKey}
			r := out[k]
			if notes[i].Ordinal == 0 {
				r.hash = notes[i].RequestHash
			}
			r.notes = append(r.notes, summarize(&notes[i]))
			out[k] = r
		}
	}
	return out, nil
}
