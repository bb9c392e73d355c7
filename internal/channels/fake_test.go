package channels_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// received is one request a fake provider got.
type received struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
	At     time.Time
}

// fake is a local provider: an httptest server that records every request
// and answers with respond (which may block, write errors, and so on).
type fake struct {
	*httptest.Server
	mu       sync.Mutex
	reqs     []received
	respond  func(w http.ResponseWriter, r *http.Request, body []byte, n int)
	released chan struct{} // closed at cleanup: unblocks handlers that hang on purpose
}

func newFake(t *testing.T, respond func(w http.ResponseWriter, r *http.Request, body []byte, n int)) *fake {
	t.Helper()
	f := &fake{respond: respond, released: make(chan struct{})}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		f.mu.Lock()
		f.reqs = append(f.reqs, received{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(), Body: body, At: time.Now()})
		n := len(f.reqs)
		f.mu.Unlock()
		f.respond(w, r, body, n)
	}))
	t.Cleanup(func() {
		close(f.released)
		f.Close()
	})
	return f
}

// hang blocks a handler until the client gives up or the test ends.
func (f *fake) hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-f.released:
	}
}

func (f *fake) requests() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]received(nil), f.reqs...)
}

func (f *fake) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}
