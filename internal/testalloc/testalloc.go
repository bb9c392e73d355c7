// Package testalloc is for the tests that count allocations
// (testing.AllocsPerRun). The race detector allocates on its own account,
// and sync.Pool drops items at random under it, so those counts are
// asserted only without -race: make test runs them a second time without
// it (-run 'Alloc|CostsNothing'). Imported by _test.go files only.
package testalloc

import "testing"

// SkipUnderRace skips tb when the test binary was built with -race.
func SkipUnderRace(tb testing.TB) {
	tb.Helper()
	if raceEnabled {
		tb.Skip("allocation counts are asserted without -race (make test runs this again without it)")
	}
}
