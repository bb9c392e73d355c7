package auth

import (
	"slices"
	"sync"
	"time"
)

// Bounds of the verified-token cache.
const (
	// verifiedTTL caps how long a verified token is trusted without a new
	// signature check, so a key withdrawn from the JWKS stops working within it.
	verifiedTTL = time.Minute
	// verifiedMax caps the entries; a full cache drops its expired entries, or
	// else all of them.
	verifiedMax = 10000
)

// verified remembers tokens that passed verification. A client sends the
// same token on every request, and checking its signature and parsing its
// claims was a third of the CPU of a GET (docs/benchmarks.md). An entry lives
// until the token expires or verifiedTTL passes, whichever is first. Entries
// are keyed by the whole token, signature included, so a token that differs
// in any byte is verified afresh.
type verified struct {
	mu sync.Mutex
	m  map[string]verifiedEntry
}

type verifiedEntry struct {
	p     Principal
	until time.Time
}

func newVerified() *verified { return &verified{m: make(map[string]verifiedEntry)} }

// get returns the principal of raw if it was verified and is still trusted at now.
func (c *verified) get(raw string, now time.Time) (Principal, bool) {
	c.mu.Lock()
	e, ok := c.m[raw]
	c.mu.Unlock()
	if !ok || !now.Before(e.until) {
		return Principal{}, false
	}
	return e.p.clone(), true
}

// put trusts raw, naming p, until the earlier of expires and now+verifiedTTL.
func (c *verified) put(raw string, p Principal, expires, now time.Time) {
	until := now.Add(verifiedTTL)
	if expires.Before(until) {
		until = expires
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= verifiedMax {
		for k, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= verifiedMax {
			clear(c.m)
		}
	}
	c.m[raw] = verifiedEntry{p: p.clone(), until: until}
}

// clone copies p's slices so no caller shares them with the cache.
func (p Principal) clone() Principal {
	p.Roles = slices.Clone(p.Roles)
	p.Collections = slices.Clone(p.Collections)
	return p
}
