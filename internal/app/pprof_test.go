package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPprofServesProfilesOnItsOwnAddress: debug.pprofAddr serves the
// profile index and stops with its context.
func TestPprofServesProfilesOnItsOwnAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pprofServer{addr: addr, log: slog.New(slog.DiscardHandler)}.Run(ctx) }()

	var res *http.Response
	require.Eventually(t, func() bool {
		res, err = http.Get("http://" + addr + "/debug/pprof/")
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, string(body), "goroutine")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the pprof server did not stop with its context")
	}
}
