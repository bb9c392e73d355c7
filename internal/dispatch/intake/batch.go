package intake

import (
	"cmp"
	"encoding/json"

	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/delivery"
	"github.com/notificationservice/notificationservice/internal/dispatch/planning"
)

// batch is one Submit: its submissions, in order, each with what the steps
// learn about it, and the notifications planned for them. Every step reads
// and writes it, so what belongs to a submission or a notification stays
// with it.
type batch struct {
	now int64 // epoch ms: every row of the batch is created at now
	// latest is the latest due time a delay may set (planning.Input.Latest).
	latest int64
	trace  string // the traceparent of Submit's ctx
	rules  map[ruleKey]planning.Resolution
	subs   []*entry
	// notes are the notifications planned for the submissions that may be
	// fresh (the keyless ones and the first of each key in the batch); after
	// keepFresh, only those of fresh submissions.
	notes []*planned

	pending   int                // deliveries inserted pending (not handed off)
	reserved  int                // places the local workers reserved for hand-offs
	handed    []delivery.Claimed // what goes to the local workers after the commit
	envelopes int                // outbox envelopes recorded
}

// entry is one submission and what Submit learns of it.
type entry struct {
	Submission
	// hash is the request's hash and first the index of the batch's first
	// submission with the same (scope, key): the dedupe keys. Keyless
	// submissions have neither.
	hash  string
	first int
	// fresh: its notifications are new (it is keyless, or its key went in
	// now); set by claimKeys.
	fresh   bool
	outcome Outcome
}

// planned is one notification planned for the submission subs[sub].
type planned struct {
	sub        int
	note       *dispatch.NotificationRecord
	deliveries []*dispatch.Delivery
	// recipients is note.Recipients as JSON, encoded once (encodeRecipients)
	// for the three places that store it: the notification's recipients, each
	// delivery's recipient (each[i] is recipient i, a slice of recipients) and
	// the send envelope's payload.
	recipients string
	each       []string
}

// encodeRecipients encodes rs as a JSON array, exactly as json.Marshal
// encodes the slice (an element is encoded the same inside an array as
// alone), and returns each element's text as a substring of it. A nil or
// empty list is "[]", as dispatch.Recipients stores it.
func encodeRecipients(rs []dispatch.Recipient) (string, []string, error) {
	if len(rs) == 0 {
		return "[]", nil, nil
	}
	buf := make([]byte, 0, 256*len(rs))
	ends := make([]int, len(rs))
	buf = append(buf, '[')
	for i := range rs {
		if i > 0 {
			buf = append(buf, ',')
		}
		b, err := json.Marshal(&rs[i])
		if err != nil {
			return "", nil, err
		}
		buf = append(buf, b...)
		ends[i] = len(buf)
	}
	buf = append(buf, ']')
	all := string(buf)
	each := make([]string, len(rs))
	start := 1
	for i, end := range ends {
		each[i] = all[start:end]
		start = end + 1
	}
	return all, each, nil
}

type ruleKey struct {
	collectionID int64
	name         string
}

func newBatch(subs []Submission, now int64, trace string) *batch {
	b := &batch{now: now, trace: trace, rules: map[ruleKey]planning.Resolution{}, subs: make([]*entry, len(subs))}
	byKey := map[[2]string]int{}
	for i, s := range subs {
		e := &entry{Submission: s}
		b.subs[i] = e
		if s.Key == "" {
			continue
		}
		// The hash re-encodes the request: compute it once per submission.
		e.hash = s.Request.Hash()
		key := [2]string{s.scope(), s.Key}
		f, ok := byKey[key]
		if !ok {
			f = i
			byKey[key] = i
		}
		e.first = f
	}
	return b
}

// reset clears what a run of the transaction computes, so a run starts
// from the submissions alone.
func (b *batch) reset() {
	b.notes, b.pending, b.handed, b.envelopes = nil, 0, nil, 0
	for _, e := range b.subs {
		e.fresh, e.outcome = false, Outcome{}
	}
}

// plan plans every submission that may be fresh: the keyless ones and the
// first of each key in the batch.
func (b *batch) plan(p *planning.Batch) error {
	for i, e := range b.subs {
		if e.Key != "" && e.first != i {
			continue
		}
		in := e.input(b.latest)
		for j, n := range e.Request.Notification {
			in.Notification = n
			note, ds := p.Plan(in, b.rules[ruleKey{in.CollectionID, n.Name}], b.now)
			note.TraceParent = cmp.Or(e.TraceParent, b.trace)
			if e.Key != "" {
				note.IntakeScope, note.Ordinal = e.scope(), j
				if j == 0 {
					note.RequestHash = e.hash
				}
			}
			all, each, err := encodeRecipients(note.Recipients)
			if err != nil {
				return err
			}
			b.notes = append(b.notes, &planned{sub: i, note: note, deliveries: ds, recipients: all, each: each})
		}
	}
	return nil
}

// inputs returns every notification of the batch as planning sees it, for
// the rules to read what they need once (planning.BatchRule). Replays of a
// key are included: reading a few extra rows costs less than a second pass.
func (b *batch) inputs() []planning.Input {
	n := 0
	for _, e := range b.subs {
		n += len(e.Request.Notification)
	}
	ins := make([]planning.Input, 0, n)
	for _, e := range b.subs {
		in := e.input(b.latest)
		for _, n := range e.Request.Notification {
			in.Notification = n
			ins = append(ins, in)
		}
	}
	return ins
}

func (e *entry) input(latest int64) planning.Input {
	in := planning.Input{CollectionID: int64(e.Request.CollectionID), Source: e.Source, Key: e.Key, Correlation: e.Correlation, Latest: latest,
		Tenant: e.Producer.Tenant, Team: e.Producer.Team, Service: e.Producer.Service, EntityID: e.Producer.EntityID}
	if e.Actor != nil {
		in.CreatedBy = e.Actor.UserID
	}
	return in
}

// keepFresh drops the planned notifications of keys seen before and returns
// the fresh ones claimKeys has not inserted yet.
func (b *batch) keepFresh() []*planned {
	var rest []*planned
	kept := b.notes[:0]
	for _, p := range b.notes {
		if !b.subs[p.sub].fresh {
			continue
		}
		if p.note.ID == 0 {
			rest = append(rest, p)
		}
		kept = append(kept, p)
	}
	b.notes = kept
	return rest
}

// deliveries returns the deliveries of b's notes, each with its
// notification's id, and each one's recipient as JSON; it counts the
// pending ones.
func (b *batch) deliveries() ([]*dispatch.Delivery, []string) {
	n := 0
	for _, p := range b.notes {
		n += len(p.deliveries)
	}
	all := make([]*dispatch.Delivery, 0, n)
	rcpts := make([]string, 0, n)
	for _, p := range b.notes {
		for _, d := range p.deliveries {
			d.NotificationID = p.note.ID
			if d.Status == dispatch.StatusPending {
				b.pending++
			}
			// planning copies recipient RecipientIndex into the delivery.
			rcpts = append(rcpts, p.each[d.RecipientIndex])
		}
		all = append(all, p.deliveries...)
	}
	return all, rcpts
}

func (b *batch) outcomes() []Outcome {
	out := make([]Outcome, len(b.subs))
	for i, e := range b.subs {
		out[i] = e.outcome
	}
	return out
}
