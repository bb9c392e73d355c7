// Package schedule is the time arithmetic of the send-time rules: quiet-hours
// windows read on a recipient's wall clock in an IANA time zone, across
// daylight-saving transitions, and a cache of loaded zones. It imports no
// package of the module, so the actions and collections validation and the
// delivery gates share one reading of a window.
package schedule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Window is a daily quiet-hours window on the local wall clock, "HH:MM"
// (24-hour) each: from Start, inclusive, to End, exclusive. It wraps
// midnight when End is before Start (21:00–08:00). Start equal to End is
// refused (Validate): it could mean "never" or "always", and a window that
// always holds would defer a delivery for ever.
type Window struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// Optional is a window a JSON document may leave absent, set to null, or
// set: an action's config.quietHours (null turns its collection's off) and
// a collection PATCH (null clears). encoding/json cannot tell absent from
// null with a pointer, hence the type.
type Optional struct {
	// Set is true when the document names the field, as null or a window.
	Set bool
	// Window is the window; nil with Set is null.
	Window *Window
}

// IsZero makes an absent field stay absent (omitzero).
func (q Optional) IsZero() bool { return !q.Set }

// MarshalJSON writes null or the window (absent is omitted by omitzero).
func (q Optional) MarshalJSON() ([]byte, error) {
	if q.Window == nil {
		return []byte("null"), nil
	}
	return json.Marshal(q.Window)
}

// UnmarshalJSON reads null or a window; encoding/json calls it for null too,
// and not at all when the field is absent.
func (q *Optional) UnmarshalJSON(b []byte) error {
	q.Set, q.Window = true, nil
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return nil
	}
	var w Window
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	q.Window = &w
	return nil
}

// FieldError is one invalid field of a Window ("start" or "end") or of a
// zone, and why; callers prefix the field with where the window sits
// (quietHours.start).
type FieldError struct {
	Field, Reason string
}

// Validate returns what is wrong with w, nil when it is usable.
func (w Window) Validate() []FieldError {
	var errs []FieldError
	s, okS := parseClock(w.Start)
	if !okS {
		errs = append(errs, FieldError{"start", "must be a time of day HH:MM (00:00 to 23:59)"})
	}
	e, okE := parseClock(w.End)
	if !okE {
		errs = append(errs, FieldError{"end", "must be a time of day HH:MM (00:00 to 23:59)"})
	}
	if okS && okE && s == e {
		errs = append(errs, FieldError{"end", "must differ from start (a window from a time to itself is empty or the whole day)"})
	}
	return errs
}

// String is the window as people read it: 21:00–08:00.
func (w Window) String() string { return w.Start + "–" + w.End }

// parseClock reads "HH:MM" into minutes after midnight.
func parseClock(s string) (int, bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, false
	}
	d := func(b byte) (int, bool) { return int(b - '0'), b >= '0' && b <= '9' }
	h1, ok1 := d(s[0])
	h2, ok2 := d(s[1])
	m1, ok3 := d(s[3])
	m2, ok4 := d(s[4])
	h, m := h1*10+h2, m1*10+m2
	if !ok1 || !ok2 || !ok3 || !ok4 || h > 23 || m > 59 {
		return 0, false
	}
	return h*60 + m, true
}

// Defer reports whether t falls inside w on the wall clock of loc and, if
// so, returns the window's end: the first instant at or after t whose local
// time is End. An invalid window holds nothing.
//
// Daylight saving, as the wall clock reads it:
//   - End in a skipped hour (spring forward: 02:30 on the last Sunday of
//     March in Europe/Paris does not exist) ends the window at the
//     transition, the first instant the clock reads a time after End (03:00
//     CEST);
//   - End in a repeated hour (fall back: 02:30 on the last Sunday of October
//     happens twice) ends it at the first 02:30 (CEST), when the clock first
//     reads End.
//
// Whether t is inside is read on t's own wall clock: 21:00–08:00 is quiet
// from 21:00 to 08:00 as the recipient's clock shows them, 11 hours of real
// time on most nights, 10 on the night the clocks go forward and 12 on the
// night they go back.
func Defer(t time.Time, loc *time.Location, w Window) (time.Time, bool) {
	start, ok1 := parseClock(w.Start)
	end, ok2 := parseClock(w.End)
	if !ok1 || !ok2 || start == end {
		return time.Time{}, false
	}
	if loc == nil {
		loc = time.UTC
	}
	lt := t.In(loc)
	now := lt.Hour()*60 + lt.Minute()
	var inside bool
	if start < end {
		inside = now >= start && now < end
	} else {
		inside = now >= start || now < end
	}
	if !inside {
		return time.Time{}, false
	}
	y, m, d := lt.Date()
	if now >= end { // before midnight of a wrapping window: it ends tomorrow
		d++
	}
	at := wallClock(y, m, d, end/60, end%60, loc)
	if !at.After(t) {
		// t is past End on a repeated hour's second pass (already quiet
		// once): the earliest End is behind it, so the window has ended.
		return time.Time{}, false
	}
	return at, true
}

// wallClock is the first instant whose local time in loc is y-m-d h:mi, or,
// when that time is skipped by a transition, the transition itself.
// time.Date leaves the choice between two readings (or the meaning of a
// skipped one) unspecified, so it is worked out here from the zone's
// offsets on either side.
func wallClock(y int, m time.Month, d, h, mi int, loc *time.Location) time.Time {
	naive := time.Date(y, m, d, h, mi, 0, 0, time.UTC)
	var best time.Time
	for _, probe := range []time.Duration{-36 * time.Hour, 36 * time.Hour} {
		_, off := naive.Add(probe).In(loc).Zone()
		c := naive.Add(-time.Duration(off) * time.Second)
		lc := c.In(loc)
		if lc.Year() == naive.Year() && lc.Month() == naive.Month() && lc.Day() == naive.Day() && lc.Hour() == h && lc.Minute() == mi {
			if best.IsZero() || c.Before(best) {
				best = c
			}
		}
	}
	if !best.IsZero() {
		return best
	}
	// Skipped: read with the offset before the gap, the time lands after
	// the transition; the zone in effect there began at the transition.
	_, off := naive.Add(-36 * time.Hour).In(loc).Zone()
	after := naive.Add(-time.Duration(off) * time.Second).In(loc)
	start, _ := after.ZoneBounds()
	if start.IsZero() {
		return after
	}
	return start
}

// ErrZone is returned for a name that is not an IANA zone this binary knows.
var ErrZone = errors.New("schedule: unknown time zone")

// Zones loads IANA zones once each. The zero value is ready; one is owned
// by the component that reads zones (the delivery gate), not shared
// through a package variable. Safe for concurrent use.
type Zones struct {
	mu sync.Mutex
	m  map[string]*time.Location
}

// Load returns the zone named name; "" is UTC. A name that is not an IANA
// zone, or "Local" (the machine's zone, which differs between instances),
// is ErrZone.
func (z *Zones) Load(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if loc, ok := z.m[name]; ok {
		return loc, nil
	}
	loc, err := LoadZone(name)
	if err != nil {
		return nil, err
	}
	if z.m == nil {
		z.m = map[string]*time.Location{}
	}
	z.m[name] = loc
	return loc, nil
}

// MaxZoneLen bounds a zone name (the longest IANA names are about 30).
const MaxZoneLen = 64

// LoadZone loads the IANA zone name without a cache (validation on save).
func LoadZone(name string) (*time.Location, error) {
	if name == "Local" || name == "" || len(name) > MaxZoneLen {
		return nil, fmt.Errorf("%w: %q", ErrZone, name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrZone, name)
	}
	return loc, nil
}
