package invalidate

import (
	"context"
	"sync"
	"time"
)

// AbsentTTL is how long an Absent trusts what it learned about a
// collection. The bus keeps it honest about every write the service makes;
// the TTL bounds what a write it cannot see (a row inserted by hand in SQL)
// goes unnoticed, and how long a collection whose last row was deleted (no
// announcement: a deletion cannot make a skipped read wrong) keeps being read.
const AbsentTTL = time.Minute

// Absent remembers which collections have no rows of one kind (a
// collection's stored preferences, its suppression list), so that the
// intake, which reads those rows for every batch, can skip the read for a
// collection that has none: at a steady 1,000 messages a second the two
// reads were an eighth of the service's CPU (docs/benchmarks.md), for
// collections that mostly have nothing stored.
//
// It is an invalidate.Subscriber for keys of its kind. A writer publishes the
// key in the transaction that adds a row (Bus.Publish) and evicts it here
// once committed (Bus.Committed), so a row added on this instance is read by
// the next batch, and one added on another instance as soon as its
// notification arrives, which is no later than a read started before that
// commit would have missed it anyway. While the bus cannot promise to deliver
// every change, nothing is served (every collection is read).
//
// What a read that missed learned is kept only if nothing was evicted or
// reset while it read (the generation check the action cache also makes): a
// collection found empty just before a row was committed would otherwise be
// remembered empty after its eviction. A nil *Absent remembers nothing.
type Absent struct {
	kind Kind
	ttl  time.Duration
	now  func() time.Time

	mu   sync.Mutex
	live bool
	gen  uint64 // bumped by every eviction of kind and every reset
	m    map[int64]absentEntry
}

type absentEntry struct {
	has bool // the collection had rows
	at  time.Time
}

// AbsentFill is the permission to keep what a read that missed is about to
// learn; it holds while nothing is evicted or reset.
type AbsentFill struct {
	gen uint64
	ok  bool
}

// NewAbsent returns an Absent for keys of kind, serving nothing until a bus
// marks it live (Bus.Subscribe). now is its clock (time.Now when nil).
func NewAbsent(kind Kind, now func() time.Time) *Absent {
	if now == nil {
		now = time.Now
	}
	return &Absent{kind: kind, ttl: AbsentTTL, now: now, m: map[int64]absentEntry{}}
}

// Lookup splits cids into those known to have rows (read: the caller reads
// them) and those it does not know (unknown: the caller asks the database
// whether they have rows and tells Fill). Collections known to have none
// are in neither. With the cache off (nil, or not live) every collection is
// to be read, and none is asked about: as without a cache.
func (a *Absent) Lookup(cids []int64) (read, unknown []int64, f AbsentFill) {
	if a == nil {
		return cids, nil, AbsentFill{}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.live {
		return cids, nil, AbsentFill{}
	}
	now := a.now()
	for _, c := range cids {
		e, ok := a.m[c]
		switch {
		case !ok || now.Sub(e.at) >= a.ttl:
			unknown = append(unknown, c)
		case e.has:
			read = append(read, c)
		}
	}
	return read, unknown, AbsentFill{gen: a.gen, ok: true}
}

// Fill records whether each of cids has rows, as read after the Lookup
// that returned f, unless something was evicted or reset since.
func (a *Absent) Fill(f AbsentFill, cids []int64, has func(cid int64) bool) {
	if a == nil || !f.ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.live || a.gen != f.gen {
		return
	}
	now := a.now()
	for _, c := range cids {
		a.m[c] = absentEntry{has: has(c), at: now}
	}
}

// MayHave is the collections of cids that may have rows: all of them with
// the cache off; else those it knows to have some, and those it does not
// know that ask (the database's answer) says have some, which it learns.
func (a *Absent) MayHave(ctx context.Context, cids []int64, ask func(context.Context, []int64) (map[int64]bool, error)) ([]int64, error) {
	read, unknown, fill := a.Lookup(cids)
	if len(unknown) == 0 {
		return read, nil
	}
	has, err := ask(ctx, unknown)
	if err != nil {
		return nil, err
	}
	a.Fill(fill, unknown, func(c int64) bool { return has[c] })
	for _, c := range unknown {
		if has[c] {
			read = append(read, c)
		}
	}
	return read, nil
}

// Evict forgets the collection a key of a's kind names.
func (a *Absent) Evict(k Key) {
	if a == nil || k.Kind != a.kind {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen++
	delete(a.m, k.CollectionID)
}

// Reset forgets everything and turns the cache on (live) or off.
func (a *Absent) Reset(live bool) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen++
	a.live = live
	clear(a.m)
}
