//go:build !race

package channels_test

// raceEnabled: the race detector allocates on its own account, so
// allocation counts are asserted only without it; make test runs those
// tests again without -race.
const raceEnabled = false
