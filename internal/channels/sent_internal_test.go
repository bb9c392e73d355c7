package channels

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// h2Like fails a POST the way net/http's HTTP/2 transport does when the
// context ends mid-write: RoundTrip returns at once, and the stream's
// writer says how its write ended (WroteRequest with end) after, or never
// (end nil).
type h2Like struct {
	headers bool
	end     *error
	after   time.Duration
}

func (h h2Like) RoundTrip(req *http.Request) (*http.Response, error) {
	trace := httptrace.ContextClientTrace(req.Context())
	if h.headers {
		trace.WroteHeaders()
	}
	if h.end != nil {
		end := *h.end
		time.AfterFunc(h.after, func() { trace.WroteRequest(httptrace.WroteRequestInfo{Err: end}) })
	}
	return nil, context.Canceled
}

func classifySent(t *testing.T, next http.RoundTripper, settle time.Duration) *Error {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "https://provider.invalid/send", bytes.NewReader([]byte(`{}`)))
	require.NoError(t, err)
	_, err = sentTransport{next: next, settle: settle}.RoundTrip(req)
	require.Error(t, err)
	return transportError("test", err)
}

// A write that ends whole after RoundTrip returned (HTTP/2, cancelled in
// its last write) reached the provider: in doubt, not sent again.
func TestSentTransportWaitsForALateWriteEnd(t *testing.T) {
	t.Parallel()
	var whole error
	e := classifySent(t, h2Like{headers: true, end: &whole, after: 50 * time.Millisecond}, time.Minute)
	require.True(t, e.MaybeAccepted, "%v", e)
}

// A write that broke part way, said late, left the provider a part it
// cannot accept: retryable.
func TestSentTransportLateWriteErrorIsRetryable(t *testing.T) {
	t.Parallel()
	broken := errors.New("stream reset")
	e := classifySent(t, h2Like{headers: true, end: &broken, after: 50 * time.Millisecond}, time.Minute)
	require.False(t, e.MaybeAccepted, "%v", e)
	require.False(t, e.Permanent)
}

// Nothing written (no headers): retryable at once, without waiting.
func TestSentTransportNothingWrittenDoesNotWait(t *testing.T) {
	t.Parallel()
	start := time.Now()
	e := classifySent(t, h2Like{}, time.Minute)
	require.False(t, e.MaybeAccepted, "%v", e)
	require.Less(t, time.Since(start), 30*time.Second)
}

// Headers out and the writer never says: after the wait, in doubt, as a
// write that may have ended whole.
func TestSentTransportUnsettledWriteIsInDoubt(t *testing.T) {
	t.Parallel()
	e := classifySent(t, h2Like{headers: true}, 20*time.Millisecond)
	require.True(t, e.MaybeAccepted, "%v", e)
}

// Over a real HTTP/2 connection: a request the provider read whole before
// the caller cancelled is in doubt; one whose body the provider never read
// (its stream held by flow control, then reset) is retryable.
func TestSentTransportOverHTTP2(t *testing.T) {
	t.Parallel()
	read, started := make(chan struct{}, 1), make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ping":
			return
		case "/reads":
			_, _ = io.Copy(io.Discard, r.Body)
			read <- struct{}{}
		case "/stalls":
			started <- struct{}{}
		}
		<-r.Context().Done() // never answers
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	next := srv.Client().Transport

	resp, err := srv.Client().Post(srv.URL+"/ping", "application/json", nil)
	require.NoError(t, err)
	require.Equal(t, "HTTP/2.0", resp.Proto)
	require.NoError(t, resp.Body.Close())

	send := func(path string, body []byte, cancelOn <-chan struct{}) *Error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-cancelOn:
				time.Sleep(20 * time.Millisecond)
			case <-time.After(10 * time.Second):
			}
			cancel()
		}()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+path, bytes.NewReader(body))
		require.NoError(t, err)
		_, err = sentTransport{next: next}.RoundTrip(req)
		require.ErrorIs(t, err, context.Canceled)
		return transportError("test", err)
	}
	require.True(t, send("/reads", []byte(`{"to": "x"}`), read).MaybeAccepted, "read whole: in doubt")
	require.False(t, send("/stalls", make([]byte, 8<<20), started).MaybeAccepted, "held by flow control: retryable")
}
