// Package eventbridgetest is a local fake of the EventBridge PutEvents API
// (AWS JSON 1.1, X-Amz-Target: AWSEvents.PutEvents) for tests and
// benchmarks that drive the real aws-sdk-go-v2 client. It records what it
// accepts, checks the PutEvents limits, and fails on demand: throttling,
// 5xx, slow answers and chosen entries.
package eventbridgetest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// PutEvents limits the fake enforces, as EventBridge does.
const (
	MaxEntries = 10
	MaxBytes   = 256 * 1024
)

// Credentials returns static test credentials for the SDK client. The fake
// does not check signatures, but the SDK will not send unsigned requests,
// and a test must never fall back to the default chain (which may reach the
// EC2 metadata endpoint).
func Credentials() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider("AKIDTEST", "test-secret", "")
}

// Entry is one entry as the fake received it.
type Entry struct {
	Source       string   `json:"Source"`
	DetailType   string   `json:"DetailType"`
	Detail       string   `json:"Detail"`
	EventBusName string   `json:"EventBusName"`
	Time         *float64 `json:"Time"` // epoch seconds, as AWS JSON 1.1 sends timestamps
	Resources    []string `json:"Resources"`
}

// EnvelopeID is detail.envelopeId, or "" when Detail has none.
func (e Entry) EnvelopeID() string {
	var d struct {
		EnvelopeID string `json:"envelopeId"`
	}
	_ = json.Unmarshal([]byte(e.Detail), &d)
	return d.EnvelopeID
}

// Size counts e as EventBridge does against the 256 KB limit.
func (e Entry) Size() int {
	n := len(e.Source) + len(e.DetailType) + len(e.Detail)
	if e.Time != nil {
		n += 14
	}
	for _, r := range e.Resources {
		n += len(r)
	}
	return n
}

// Call is one PutEvents request and how the fake answered it.
type Call struct {
	Entries []Entry
	Status  int   // HTTP status of the answer
	Failed  []int // indexes of entries failed in a 200 answer
	At      time.Time
}

// EntryFault decides whether to fail one entry of an otherwise successful
// call: it returns an error code (ThrottlingException, InternalFailure,
// MalformedDetail, …) or "" to accept the entry.
type EntryFault func(e Entry) string

// Server is the fake. Its zero value is not usable; call New.
type Server struct {
	*httptest.Server

	mu         sync.Mutex
	calls      []Call
	accepted   []Entry
	counts     map[string]int // envelope id → times accepted
	inFlight   map[string]int // envelope id → calls carrying it right now
	overlaps   []string       // envelope ids seen in two calls at once
	violations []string
	throttle   int // answer the next n calls with ThrottlingException
	serverErr  int // answer the next n calls with HTTP 500
	reject     int // answer the next n calls with ValidationException
	slow       int // delay the next n calls by slowFor
	slowFor    time.Duration
	down       bool
	latency    time.Duration
	entryFault EntryFault
	rejectIf   func([]Entry) bool
}

// New starts a fake; it is closed when the test ends (pass t) or by Close.
func New(t interface{ Cleanup(func()) }) *Server {
	s := &Server{counts: map[string]int{}, inFlight: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	if t != nil {
		t.Cleanup(s.Close)
	}
	return s
}

// Throttle answers the next n calls with HTTP 400 ThrottlingException.
func (s *Server) Throttle(n int) { s.mu.Lock(); s.throttle += n; s.mu.Unlock() }

// ServerError answers the next n calls with HTTP 500 InternalException.
func (s *Server) ServerError(n int) { s.mu.Lock(); s.serverErr += n; s.mu.Unlock() }

// Reject answers the next n calls with HTTP 400 ValidationException.
func (s *Server) Reject(n int) { s.mu.Lock(); s.reject += n; s.mu.Unlock() }

// Slow delays the next n calls by d before answering (a timeout, when d is
// longer than the client waits).
func (s *Server) Slow(n int, d time.Duration) {
	s.mu.Lock()
	s.slow, s.slowFor = s.slow+n, d
	s.mu.Unlock()
}

// SetDown makes every call fail with HTTP 503 until SetDown(false).
func (s *Server) SetDown(down bool) { s.mu.Lock(); s.down = down; s.mu.Unlock() }

// SetLatency delays every call by d, like a real network round trip.
func (s *Server) SetLatency(d time.Duration) { s.mu.Lock(); s.latency = d; s.mu.Unlock() }

// RejectCalls answers with HTTP 400 ValidationException every call for
// which f returns true (nil: none), as EventBridge does for a request it
// finds invalid as a whole.
func (s *Server) RejectCalls(f func([]Entry) bool) { s.mu.Lock(); s.rejectIf = f; s.mu.Unlock() }

// FailEntries sets the per-entry fault (nil: accept every entry).
func (s *Server) FailEntries(f EntryFault) { s.mu.Lock(); s.entryFault = f; s.mu.Unlock() }

// FailRate returns an EntryFault that fails a fraction p of entries with
// code, chosen by a PRNG seeded with seed (so runs repeat).
func FailRate(p float64, code string, seed uint64) EntryFault {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(Entry) string {
		mu.Lock()
		defer mu.Unlock()
		if rng.Float64() < p {
			return code
		}
		return ""
	}
}

// Calls returns every call so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Accepted returns every entry accepted so far, in the order accepted.
func (s *Server) Accepted() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Entry(nil), s.accepted...)
}

// AcceptedCount returns how many entries were accepted so far (cheaply:
// benchmarks poll it).
func (s *Server) AcceptedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.accepted)
}

// Count returns how many times the entry with envelopeID was accepted.
func (s *Server) Count(envelopeID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[envelopeID]
}

// Counts returns envelope id → times accepted.
func (s *Server) Counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}

// Overlaps returns the envelope ids that arrived in a call while another
// call carrying the same id was still being answered: two relays
// publishing the same row at the same time.
func (s *Server) Overlaps() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.overlaps...)
}

// Violations returns every breach of the PutEvents limits the fake saw.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

type request struct {
	Entries []Entry `json:"Entries"`
}

type resultEntry struct {
	EventID      string `json:"EventId,omitempty"`
	ErrorCode    string `json:"ErrorCode,omitempty"`
	ErrorMessage string `json:"ErrorMessage,omitempty"`
}

type response struct {
	FailedEntryCount int           `json:"FailedEntryCount"`
	Entries          []resultEntry `json:"Entries"`
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.Header.Get("X-Amz-Target") != "AWSEvents.PutEvents" {
		writeError(w, http.StatusBadRequest, "UnknownOperationException", "only AWSEvents.PutEvents is faked")
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-amz-json-1.1") {
		writeError(w, http.StatusBadRequest, "SerializationException", "content type "+ct)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	call := Call{Entries: req.Entries, At: time.Now()}

	s.mu.Lock()
	delay := s.latency
	if s.slow > 0 {
		s.slow--
		delay += s.slowFor
	}
	var status int
	var code string
	switch {
	case s.down:
		status, code = http.StatusServiceUnavailable, "ServiceUnavailable"
	case s.throttle > 0:
		s.throttle--
		status, code = http.StatusBadRequest, "ThrottlingException"
	case s.serverErr > 0:
		s.serverErr--
		status, code = http.StatusInternalServerError, "InternalException"
	case s.reject > 0:
		s.reject--
		status, code = http.StatusBadRequest, "ValidationException"
	case s.rejectIf != nil && s.rejectIf(req.Entries):
		status, code = http.StatusBadRequest, "ValidationException"
	}
	if status == 0 {
		status, code = s.checkLimits(req.Entries)
	}
	ids := make([]string, len(req.Entries))
	for i, e := range req.Entries {
		ids[i] = e.EnvelopeID()
		if ids[i] == "" {
			continue
		}
		if s.inFlight[ids[i]] > 0 {
			s.overlaps = append(s.overlaps, ids[i])
		}
		s.inFlight[ids[i]]++
	}
	fault := s.entryFault
	s.mu.Unlock()

	defer func() {
		s.mu.Lock()
		for _, id := range ids {
			if id != "" {
				s.inFlight[id]--
			}
		}
		s.mu.Unlock()
	}()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			// The client gave up: it never learns the outcome, so nothing
			// counts as accepted.
			t.Stop()
			s.record(call, http.StatusRequestTimeout)
			return
		}
	}
	if status != 0 {
		s.record(call, status)
		writeError(w, status, code, code+" (injected by eventbridgetest)")
		return
	}

	resp := response{Entries: make([]resultEntry, len(req.Entries))}
	for i, e := range req.Entries {
		c := entryError(e)
		if c == "" && fault != nil {
			c = fault(e)
		}
		if c != "" {
			resp.FailedEntryCount++
			resp.Entries[i] = resultEntry{ErrorCode: c, ErrorMessage: c + " (eventbridgetest)"}
			call.Failed = append(call.Failed, i)
			continue
		}
		resp.Entries[i] = resultEntry{EventID: fmt.Sprintf("evt-%d-%d", time.Now().UnixNano(), i)}
	}
	s.mu.Lock()
	call.Status = http.StatusOK
	s.calls = append(s.calls, call)
	failed := map[int]bool{}
	for _, i := range call.Failed {
		failed[i] = true
	}
	for i, e := range req.Entries {
		if !failed[i] {
			s.accepted = append(s.accepted, e)
			s.counts[ids[i]]++
		}
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(resp)
}

// checkLimits refuses a call over the PutEvents limits, as EventBridge does,
// and records the breach.
func (s *Server) checkLimits(entries []Entry) (int, string) {
	if len(entries) == 0 || len(entries) > MaxEntries {
		s.violations = append(s.violations, fmt.Sprintf("%d entries in one call", len(entries)))
		return http.StatusBadRequest, "ValidationException"
	}
	total := 0
	for _, e := range entries {
		total += e.Size()
	}
	if total > MaxBytes {
		s.violations = append(s.violations, fmt.Sprintf("%d bytes in one call", total))
		return http.StatusBadRequest, "ValidationException"
	}
	return 0, ""
}

// entryError fails an entry EventBridge itself would fail.
func entryError(e Entry) string {
	if e.Source == "" || e.DetailType == "" || e.Detail == "" {
		return "InvalidArgument"
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal([]byte(e.Detail), &obj) != nil {
		return "MalformedDetail"
	}
	if e.Time != nil && (math.IsNaN(*e.Time) || *e.Time < 0) {
		return "InvalidArgument"
	}
	return ""
}

func (s *Server) record(c Call, status int) {
	s.mu.Lock()
	c.Status = status
	s.calls = append(s.calls, c)
	s.mu.Unlock()
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}
