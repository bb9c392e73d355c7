package invalidate_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/invalidate"
)

func TestAbsent(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	a := invalidate.NewAbsent(invalidate.KindSuppressions, func() time.Time { return now })
	has := map[int64]bool{1: false, 2: true}
	learn := func(cids ...int64) {
		t.Helper()
		_, unknown, f := a.Lookup(cids)
		a.Fill(f, unknown, func(c int64) bool { return has[c] })
	}

	// Until a bus marks it live it serves nothing: every collection is read.
	read, unknown, _ := a.Lookup([]int64{1, 2})
	require.Equal(t, []int64{1, 2}, read)
	require.Empty(t, unknown)

	a.Reset(true)
	read, unknown, _ = a.Lookup([]int64{1, 2})
	require.Empty(t, read)
	require.Equal(t, []int64{1, 2}, unknown)
	learn(1, 2)
	read, unknown, _ = a.Lookup([]int64{1, 2})
	require.Equal(t, []int64{2}, read, "1 has none: neither read nor asked about")
	require.Empty(t, unknown)

	// A key of its kind makes the collection unknown again; other kinds,
	// or other collections, do not.
	a.Evict(invalidate.Preferences(1))
	a.Evict(invalidate.Collection(1))
	_, unknown, _ = a.Lookup([]int64{1})
	require.Empty(t, unknown)
	a.Evict(invalidate.Suppressions(1))
	_, unknown, _ = a.Lookup([]int64{1})
	require.Equal(t, []int64{1}, unknown)

	// What a read learned is dropped when an eviction came while it read:
	// the row the eviction announces may have committed after the read.
	_, unknown, f := a.Lookup([]int64{1})
	a.Evict(invalidate.Suppressions(1))
	a.Fill(f, unknown, func(int64) bool { return false })
	_, unknown, _ = a.Lookup([]int64{1})
	require.Equal(t, []int64{1}, unknown)
	_, unknown, f = a.Lookup([]int64{1})
	a.Reset(true)
	a.Fill(f, unknown, func(int64) bool { return false })
	_, unknown, _ = a.Lookup([]int64{1})
	require.Equal(t, []int64{1}, unknown, "a reset drops a fill too")

	// What it learned holds for AbsentTTL.
	learn(1)
	now = now.Add(invalidate.AbsentTTL - time.Second)
	_, unknown, _ = a.Lookup([]int64{1})
	require.Empty(t, unknown)
	now = now.Add(time.Second)
	_, unknown, _ = a.Lookup([]int64{1})
	require.Equal(t, []int64{1}, unknown)

	// Off again (the listener lost): everything is read, nothing learned.
	learn(1)
	a.Reset(false)
	read, unknown, f = a.Lookup([]int64{1})
	require.Equal(t, []int64{1}, read)
	require.Empty(t, unknown)
	a.Fill(f, []int64{1}, func(int64) bool { return false })
	a.Reset(true)
	_, unknown, _ = a.Lookup([]int64{1})
	require.Equal(t, []int64{1}, unknown)

	// A nil Absent reads everything.
	var none *invalidate.Absent
	read, unknown, _ = none.Lookup([]int64{3})
	require.Equal(t, []int64{3}, read)
	require.Empty(t, unknown)
}

func TestParseNewKinds(t *testing.T) {
	for _, k := range []invalidate.Key{invalidate.Preferences(7), invalidate.Suppressions(8)} {
		got, err := invalidate.Parse(k.String())
		require.NoError(t, err)
		require.Equal(t, k, got)
	}
}
