//go:build !race

package macros

// raceEnabled: the race detector allocates on its own account (and sync.Pool
// drops items at random under it), so allocation counts are asserted only
// without it; make test runs those tests again without -race.
const raceEnabled = false
