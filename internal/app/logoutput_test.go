package app

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// countingWriter records what it is given and how many writes it took.
type countingWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

func (w *countingWriter) snapshot() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String(), w.writes
}

// Lines logged close together leave in one write, whole and in order, and
// Close writes what still waits.
func TestLogOutputBatchesLinesIntoFewWrites(t *testing.T) {
	t.Parallel()
	var w countingWriter
	o := newLogOutput(&w, time.Hour) // nothing leaves before Close but a full buffer
	var want strings.Builder
	for i := range 200 {
		line := fmt.Sprintf(`{"msg":"line %d"}`+"\n", i)
		want.WriteString(line)
		n, err := o.Write([]byte(line))
		require.NoError(t, err)
		require.Equal(t, len(line), n)
	}
	_, writes := w.snapshot()
	require.Zero(t, writes, "lines wait for the interval")
	require.NoError(t, o.Close())
	got, writes := w.snapshot()
	require.Equal(t, want.String(), got)
	require.Equal(t, 1, writes)

	_, err := o.Write([]byte("after close\n"))
	require.NoError(t, err)
	got, _ = w.snapshot()
	require.True(t, strings.HasSuffix(got, "after close\n"), "a line logged after Close is written at once")
}

// A line does not wait for the next one: it is written within the interval.
func TestLogOutputWritesALoneLineWithinTheInterval(t *testing.T) {
	t.Parallel()
	var w countingWriter
	o := newLogOutput(&w, 10*time.Millisecond)
	defer o.Close()
	_, err := o.Write([]byte("lonely\n"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { got, _ := w.snapshot(); return got == "lonely\n" }, 2*time.Second, time.Millisecond)
}

// Concurrent loggers: every line arrives once, unbroken; a full buffer is
// written without waiting for the interval.
func TestLogOutputConcurrentLinesStayWhole(t *testing.T) {
	t.Parallel()
	var w countingWriter
	o := newLogOutput(&w, time.Hour)
	line := strings.Repeat("x", 1000) + "\n"
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				_, _ = o.Write([]byte(line))
			}
		})
	}
	wg.Wait()
	require.Eventually(t, func() bool { _, n := w.snapshot(); return n > 0 }, 2*time.Second, time.Millisecond,
		"1.6 MB waiting must not wait an hour")
	require.NoError(t, o.Close())
	got, writes := w.snapshot()
	require.Equal(t, strings.Repeat(line, 1600), got)
	require.Less(t, writes, 1600/4, "lines leave in batches")
}
