// Package channeltest is the conformance suite every channel provider runs
// against its fake, as Watermill runs one suite against every Pub/Sub: a
// provider joins with one Row (how to build the channel against a fake that
// answers as the suite asks, and which features it has), and Run checks the
// contract of channels.Channel on it: success, each error class, pacing,
// cancellation, deadlines, reconciliation and the redaction of secrets.
//
// A test of a feature the row lacks is skipped with the reason the row
// gives, never passed silently. It is imported by _test.go files only.
package channeltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/channels"
)

// Feature is a capability a test needs.
type Feature string

// The features a row declares.
const (
	// Remote: Send calls a provider, so it meets the provider's answers
	// (429, 5xx, refusals, hangs, dropped connections).
	Remote Feature = "remote"
	// Pacing: Send waits for a configured rate (Options.RatePerSecond).
	Pacing Feature = "pacing"
	// Reconcile: the channel is a channels.Reconciler.
	Reconcile Feature = "reconcile"
	// Secrets: the channel holds credentials (Fixture.Secrets).
	Secrets Feature = "secrets"
	// InDoubt: a call whose request reached the provider and whose answer
	// was lost (a timeout, a dropped connection, the caller's cancellation
	// mid-call) fails in doubt (channels.MaybeAccepted), not retryably:
	// sending it again could deliver it twice. A row without it retries
	// such a call, and says in Lacks why a repeat is harmless there.
	InDoubt Feature = "in-doubt"
)

// Features says which features a provider has. Every feature it lacks must
// be named in Lacks with the reason, which the skipped tests show.
type Features struct {
	Remote, Pacing, Reconcile, Secrets, InDoubt bool
	Lacks                                       map[Feature]string
}

func (f Features) has(x Feature) bool {
	switch x {
	case Remote:
		return f.Remote
	case Pacing:
		return f.Pacing
	case Reconcile:
		return f.Reconcile
	case Secrets:
		return f.Secrets
	case InDoubt:
		return f.InDoubt
	}
	return false
}

// AnswerKind is how the fake answers one call.
type AnswerKind int

// The answers a Remote row's fake must be able to give, each in its
// provider's own wire format.
const (
	// Accept: the provider accepts the message (or answers a lookup).
	Accept AnswerKind = iota
	// RateLimited: HTTP 429, with Retry-After when Answer.RetryAfter > 0.
	RateLimited
	// ServerError: HTTP 500.
	ServerError
	// Unavailable: HTTP 503.
	Unavailable
	// Reject: the provider refuses the recipient for good (a 4xx naming it).
	Reject
	// Hang: no answer until the client gives up.
	Hang
	// Drop: the connection is closed without an answer.
	Drop
)

// Answer is what the fake answers to one call. Reason is the provider's
// own words in an error answer, which the channel must keep in its error.
type Answer struct {
	Kind       AnswerKind
	RetryAfter time.Duration
	Reason     string
}

// Options configure the channel and its fake for one test.
type Options struct {
	// Answer says what the fake answers to its call-th request (from 1);
	// nil accepts everything.
	Answer func(call int) Answer
	// RatePerSecond and Burst are the provider's pacing (0: unlimited).
	RatePerSecond float64
	Burst         int
	// Timeout bounds one provider call.
	Timeout time.Duration
	// Log is the logger the channel must log to.
	Log *slog.Logger
}

// Fixture is a channel under test and what the suite needs of its fake.
type Fixture struct {
	Channel channels.Channel
	// Calls is how many requests the fake received (for the sandbox: how
	// many messages it recorded).
	Calls func() int
	// IDs are the provider message ids the fake handed out; nil when the
	// fake does not know them.
	IDs func() []string
	// SetClock replaces the channel's clock, its rate limiter's included
	// (rows with Pacing).
	SetClock func(now func() time.Time)
	// Secrets are the credentials the channel holds (rows with Secrets).
	Secrets []string
	// Close stops the fake: nothing listens at its address any more
	// (rows with Remote).
	Close func()
}

// Row is one provider in the suite.
type Row struct {
	// Name names the row ("sandbox (database)"); Provider is the name the
	// channel's errors carry (channels.Error.Provider).
	Name, Provider string
	Features       Features
	// Setup builds the channel against a fake answering as o says.
	Setup func(t *testing.T, o Options) Fixture
	// Message returns a message the provider accepts, each i with its own
	// recipient and content, so each goes out in a call of its own.
	Message func(i int) channels.Message
	// Invalid returns a message the provider refuses for good.
	Invalid func(i int) channels.Message
}

// msg is r.Message(i) with delivery id i.
func (r Row) msg(i int) channels.Message {
	m := r.Message(i)
	m.DeliveryID = int64(i)
	return m
}

// test is one conformance test and the features it needs.
type test struct {
	name  string
	needs []Feature
	run   func(t *testing.T, r Row)
}

var tests = []test{
	{"DeclaredFeatures", nil, testDeclaredFeatures},
	{"Success", nil, testSuccess},
	{"InvalidRecipient", nil, testInvalidRecipient},
	{"RateLimitedWithRetryAfter", []Feature{Remote}, testRateLimitedWithRetryAfter},
	{"RateLimitedWithoutRetryAfter", []Feature{Remote}, testRateLimitedWithoutRetryAfter},
	{"ServerError", []Feature{Remote}, testServerError},
	{"Rejected", []Feature{Remote}, testRejected},
	{"Timeout", []Feature{Remote}, testTimeout},
	{"ConnectionDropped", []Feature{Remote}, testConnectionDropped},
	{"Unreachable", []Feature{Remote}, testUnreachable},
	{"Pacing", []Feature{Pacing}, testPacing},
	{"CancelledBeforeSend", nil, testCancelledBeforeSend},
	{"CancelledDuringCall", []Feature{Remote}, testCancelledDuringCall},
	{"DeadlinePassedBeforeSend", nil, testDeadlinePassedBeforeSend},
	{"DeadlineDuringCall", []Feature{Remote}, testDeadlineDuringCall},
	{"ReconcileFoundAndNotFound", []Feature{Reconcile}, testReconcile},
	{"ReconcileLookupFails", []Feature{Reconcile, Remote}, testReconcileLookupFails},
	{"SecretsRedacted", []Feature{Remote, Secrets}, testSecretsRedacted},
}

// Run runs every conformance test against r, in parallel.
func Run(t *testing.T, r Row) {
	t.Helper()
	for _, f := range []Feature{Remote, Pacing, Reconcile, Secrets, InDoubt} {
		if !r.Features.has(f) && r.Features.Lacks[f] == "" {
			t.Fatalf("row %s lacks %s without saying why: set Features.Lacks[%q]", r.Name, f, f)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, f := range tc.needs {
				if !r.Features.has(f) {
					t.Skipf("%s has no %s: %s", r.Name, f, r.Features.Lacks[f])
				}
			}
			tc.run(t, r)
		})
	}
}

// Reasons the fake gives in its error answers; the channel's error must
// carry them.
const (
	reasonBusy     = "conformance: too many requests"
	reasonFailing  = "conformance: internal failure"
	reasonDown     = "conformance: service unavailable"
	reasonRejected = "conformance: the recipient is not valid"
)

// always answers a every time.
func always(a Answer) func(int) Answer { return func(int) Answer { return a } }

// logBuffer collects what the channel logs, at every level.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLog() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// setup builds r's fixture with o, filling the defaults.
func setup(t *testing.T, r Row, o Options) Fixture {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return r.Setup(t, o)
}

// sendOne sends m alone and returns its result.
func sendOne(t *testing.T, ctx context.Context, ch channels.Channel, m channels.Message) channels.Result {
	t.Helper()
	res := ch.Send(ctx, []channels.Message{m})
	require.Len(t, res, 1, "one result per message")
	return res[0]
}

// classified requires err to be (or wrap) an *channels.Error of r's
// provider, and returns it.
func classified(t *testing.T, r Row, err error) *channels.Error {
	t.Helper()
	require.Error(t, err)
	var e *channels.Error
	require.True(t, errors.As(err, &e), "%T %v is not a *channels.Error", err, err)
	require.Equal(t, r.Provider, e.Provider, "the error names the provider")
	return e
}

// retryable requires res to have failed with a retryable error.
func retryable(t *testing.T, r Row, res channels.Result) *channels.Error {
	t.Helper()
	e := classified(t, r, res.Err)
	require.False(t, e.Permanent, "retryable: %v", e)
	require.Empty(t, res.ProviderMessageID)
	return e
}

func testDeclaredFeatures(t *testing.T, r Row) {
	fx := setup(t, r, Options{})
	_, ok := fx.Channel.(channels.Reconciler)
	require.Equal(t, r.Features.Reconcile, ok, "Features.Reconcile must say whether the channel is a channels.Reconciler")
	require.Equal(t, r.Features.Pacing, fx.SetClock != nil, "a row with Pacing gives SetClock, and only then")
	require.Equal(t, r.Features.Secrets, len(fx.Secrets) > 0, "a row with Secrets names them, and only then")
	require.Equal(t, r.Provider, fx.Channel.Name())
}

func testSuccess(t *testing.T, r Row) {
	fx := setup(t, r, Options{})
	msgs := []channels.Message{r.msg(1), r.msg(2), r.msg(3)}
	res := fx.Channel.Send(context.Background(), msgs)
	require.Len(t, res, len(msgs), "one result per message")
	for i, x := range res {
		require.NoError(t, x.Err, "message %d", i)
		require.NotEmpty(t, x.ProviderMessageID, "message %d: the provider message id", i)
		if fx.IDs != nil {
			require.Contains(t, fx.IDs(), x.ProviderMessageID, "message %d: the id the provider gave", i)
		}
	}
	require.Equal(t, len(msgs), fx.Calls(), "each message sent once")
}

func testInvalidRecipient(t *testing.T, r Row) {
	fx := setup(t, r, Options{})
	res := fx.Channel.Send(context.Background(), []channels.Message{r.Invalid(1), r.msg(2)})
	require.Len(t, res, 2)
	e := classified(t, r, res[0].Err)
	require.True(t, e.Permanent, "an invalid recipient is permanent: %v", e)
	require.NotEmpty(t, e.Reason, "with the reason")
	require.Empty(t, res[0].ProviderMessageID)
	require.NoError(t, res[1].Err, "the invalid message fails alone")
	require.Equal(t, 1, fx.Calls(), "only the valid message is sent")
}

// errorAnswer sends one message against a fake answering a and returns
// the result, after checking the channel called the provider exactly once
// (it never retries on its own) and kept the provider's reason.
func errorAnswer(t *testing.T, r Row, a Answer) channels.Result {
	t.Helper()
	fx := setup(t, r, Options{Answer: always(a)})
	res := sendOne(t, context.Background(), fx.Channel, r.msg(1))
	require.Equal(t, 1, fx.Calls(), "exactly one call: the dispatcher owns retries")
	if a.Reason != "" {
		require.Contains(t, classified(t, r, res.Err).Reason, a.Reason, "the provider's reason")
	}
	return res
}

func testRateLimitedWithRetryAfter(t *testing.T, r Row) {
	res := errorAnswer(t, r, Answer{Kind: RateLimited, RetryAfter: 7 * time.Second, Reason: reasonBusy})
	e := retryable(t, r, res)
	require.Equal(t, 7*time.Second, e.RetryAfter, "the provider's Retry-After")
}

func testRateLimitedWithoutRetryAfter(t *testing.T, r Row) {
	res := errorAnswer(t, r, Answer{Kind: RateLimited, Reason: reasonBusy})
	e := retryable(t, r, res)
	require.Zero(t, e.RetryAfter, "no Retry-After: the dispatcher's backoff decides")
}

func testServerError(t *testing.T, r Row) {
	for _, a := range []Answer{{Kind: ServerError, Reason: reasonFailing}, {Kind: Unavailable, Reason: reasonDown}} {
		t.Run(a.Reason, func(t *testing.T) {
			t.Parallel()
			retryable(t, r, errorAnswer(t, r, a))
		})
	}
}

func testRejected(t *testing.T, r Row) {
	res := errorAnswer(t, r, Answer{Kind: Reject, Reason: reasonRejected})
	e := classified(t, r, res.Err)
	require.True(t, e.Permanent, "a refused recipient is permanent: %v", e)
	require.Zero(t, e.RetryAfter)
	require.Empty(t, res.ProviderMessageID)
}

// testTimeout lets the channel's own timeout end a call the provider never
// answers. A first call, answered, warms the channel up (connections, OAuth
// tokens), so the timeout meets the provider call itself: under -race on a
// loaded machine FCM's token fetch once took the whole of a 100 ms timeout.
// The fake counts a request once its handler has read it, which can come
// after the client gave up: the count is awaited, not read at once.
func testTimeout(t *testing.T, r Row) {
	fx := setup(t, r, Options{Timeout: time.Second, Answer: func(call int) Answer {
		if call == 1 {
			return Answer{Kind: Accept}
		}
		return Answer{Kind: Hang}
	}})
	require.NoError(t, sendOne(t, context.Background(), fx.Channel, r.msg(1)).Err)
	e := answerLost(t, r, sendOne(t, context.Background(), fx.Channel, r.msg(2)))
	require.Contains(t, e.Reason, "timeout")
	require.Eventually(t, func() bool { return fx.Calls() >= 2 }, 30*time.Second, 5*time.Millisecond, "the hung call reached the fake")
	require.Equal(t, 2, fx.Calls(), "exactly one call for the hung send")
}

func testConnectionDropped(t *testing.T, r Row) {
	answerLost(t, r, errorAnswer(t, r, Answer{Kind: Drop}))
}

// testUnreachable sends to a provider nobody listens for: the request
// never went out, so a retry cannot repeat it, in doubt or not.
func testUnreachable(t *testing.T, r Row) {
	fx := setup(t, r, Options{Timeout: 5 * time.Second})
	require.NotNil(t, fx.Close, "a row with Remote gives Close")
	fx.Close()
	e := retryable(t, r, sendOne(t, context.Background(), fx.Channel, r.msg(1)))
	require.False(t, e.MaybeAccepted, "nothing reached the provider: %v", e)
	require.Zero(t, fx.Calls())
}

// answerLost requires res to have failed as a call whose request reached
// the provider and whose answer was lost: in doubt for a row with InDoubt,
// else retryable.
func answerLost(t *testing.T, r Row, res channels.Result) *channels.Error {
	t.Helper()
	e := retryable(t, r, res)
	require.Equal(t, r.Features.InDoubt, e.MaybeAccepted, "in doubt (channels.MaybeAccepted) if and only if the row has InDoubt: %v", e)
	return e
}

// testPacing counts the calls the channel lets out against its injected
// clock: with 2 per second and a burst of 2, two at once, then one per
// half second, and an idle sender saves up to the burst only. The clock
// stands an hour after the real one, so every wait outlasts the call's
// deadline: the channel does not wait but answers retryable with the wait
// as RetryAfter, and nothing is slept.
func testPacing(t *testing.T, r Row) {
	fx := setup(t, r, Options{RatePerSecond: 2, Burst: 2})
	now := time.Now().Add(time.Hour)
	fx.SetClock(func() time.Time { return now })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	next := 0
	send := func(n int, wait time.Duration) (sent int) {
		t.Helper()
		before := fx.Calls()
		for range n {
			next++
			res := sendOne(t, ctx, fx.Channel, r.msg(next))
			if res.Err == nil {
				sent++
				continue
			}
			e := retryable(t, r, res)
			require.Contains(t, e.Reason, "rate limit")
			require.Equal(t, wait, e.RetryAfter, "the wait for the next slot")
		}
		require.Equal(t, sent, fx.Calls()-before, "calls released")
		return sent
	}
	half := 500 * time.Millisecond
	require.Equal(t, 2, send(5, half), "the burst")
	now = now.Add(half - time.Millisecond)
	require.Equal(t, 0, send(1, time.Millisecond), "no slot before half a second")
	now = now.Add(time.Millisecond)
	require.Equal(t, 1, send(3, half), "one slot per half second")
	now = now.Add(10 * time.Second)
	require.Equal(t, 2, send(4, half), "an idle sender saves up to the burst, no more")
}

func testCancelledBeforeSend(t *testing.T, r Row) {
	fx := setup(t, r, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := sendOne(t, ctx, fx.Channel, r.msg(1))
	retryable(t, r, res)
	require.ErrorIs(t, res.Err, context.Canceled)
	require.Zero(t, fx.Calls(), "a cancelled send sends nothing")
}

func testDeadlinePassedBeforeSend(t *testing.T, r Row) {
	fx := setup(t, r, Options{})
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	res := sendOne(t, ctx, fx.Channel, r.msg(1))
	retryable(t, r, res)
	require.ErrorIs(t, res.Err, context.DeadlineExceeded)
	require.Zero(t, fx.Calls(), "a send past its deadline sends nothing")
}

// sendStuck sends one message against a fake that never answers, with a
// channel timeout far longer than the test, so only ctx can end the call.
// A first send, answered, warms the channel up (connections, OAuth
// tokens), so the stuck call is the provider call itself. stop, when
// given, is called once the fake has the request. The bound is a liveness
// check (a channel ignoring ctx would hang), not a timing assertion.
func sendStuck(t *testing.T, r Row, ctx func() context.Context, stop func()) channels.Result {
	t.Helper()
	fx := setup(t, r, Options{Timeout: time.Hour, Answer: func(call int) Answer {
		if call == 1 {
			return Answer{Kind: Accept}
		}
		return Answer{Kind: Hang}
	}})
	require.NoError(t, sendOne(t, context.Background(), fx.Channel, r.msg(1)).Err)
	done := make(chan channels.Result, 1)
	c := ctx() // after the warm-up: a deadline starts now
	go func() { done <- sendOne(t, c, fx.Channel, r.msg(2)) }()
	if stop != nil {
		require.Eventually(t, func() bool { return fx.Calls() == 2 }, 30*time.Second, 5*time.Millisecond)
		stop()
	}
	select {
	case res := <-done:
		require.LessOrEqual(t, fx.Calls(), 2, "at most one call")
		return res
	case <-time.After(time.Minute):
		t.Fatal("Send did not return when its context ended")
		return channels.Result{}
	}
}

func testCancelledDuringCall(t *testing.T, r Row) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := sendStuck(t, r, func() context.Context { return ctx }, cancel)
	answerLost(t, r, res)
	require.ErrorIs(t, res.Err, context.Canceled)
}

func testDeadlineDuringCall(t *testing.T, r Row) {
	var cancel context.CancelFunc = func() {}
	defer func() { cancel() }()
	res := sendStuck(t, r, func() context.Context {
		var ctx context.Context
		ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
		return ctx
	}, nil)
	answerLost(t, r, res)
	require.ErrorIs(t, res.Err, context.DeadlineExceeded)
}

// inDoubt is the in-doubt record of m, as recovery builds it: the address,
// the sender and the body (the subject for email).
func inDoubt(m channels.Message, since, until time.Time) channels.InDoubt {
	d := channels.InDoubt{DeliveryID: m.DeliveryID, NotificationID: m.NotificationID, Since: since, Until: until}
	switch {
	case len(m.To) > 0:
		d.Address, d.Sender, d.Body = m.To[0].Email, m.From.Email, m.Subject
	case m.Phone != "":
		d.Address, d.Body = m.Phone, m.Body
		d.Sender = m.MessagingServiceSID
		if d.Sender == "" {
			d.Sender = m.SMSFrom
		}
	default:
		d.Address, d.Body = m.PushToken, m.Body
	}
	return d
}

func testReconcile(t *testing.T, r Row) {
	fx := setup(t, r, Options{})
	since := time.Now().Add(-time.Minute)
	sent := r.msg(1)
	res := sendOne(t, context.Background(), fx.Channel, sent)
	require.NoError(t, res.Err)
	until := time.Now().Add(time.Minute)
	got, err := fx.Channel.(channels.Reconciler).Accepted(context.Background(), []channels.InDoubt{
		inDoubt(sent, since, until),
		inDoubt(r.msg(2), since, until), // never sent
	})
	require.NoError(t, err)
	require.Equal(t, map[int64]string{1: res.ProviderMessageID}, got, "found with its id; not found left out")
}

func testReconcileLookupFails(t *testing.T, r Row) {
	fx := setup(t, r, Options{Answer: always(Answer{Kind: Unavailable, Reason: reasonDown})})
	now := time.Now()
	got, err := fx.Channel.(channels.Reconciler).Accepted(context.Background(), []channels.InDoubt{inDoubt(r.msg(1), now, now)})
	require.Error(t, err, "a provider that cannot be asked is an error, not \"nothing accepted\" (which sends again)")
	require.Nil(t, got)
}

// testSecretsRedacted drives every error class and requires that no
// credential the channel holds shows in an error or in the log.
func testSecretsRedacted(t *testing.T, r Row) {
	answers := []Answer{
		{Kind: RateLimited, RetryAfter: time.Second, Reason: reasonBusy},
		{Kind: ServerError, Reason: reasonFailing},
		{Kind: Unavailable, Reason: reasonDown},
		{Kind: Reject, Reason: reasonRejected},
		{Kind: Drop},
		{Kind: Hang},
	}
	for _, a := range answers {
		t.Run(fmt.Sprint(a.Kind), func(t *testing.T) {
			t.Parallel()
			log, logs := newLog()
			fx := setup(t, r, Options{Answer: always(a), Timeout: 100 * time.Millisecond, Log: log})
			var texts []string
			// Four sends: the breaker opens on the third retryable failure
			// and logs it; the fourth meets the open circuit.
			for i := range 4 {
				res := sendOne(t, context.Background(), fx.Channel, r.msg(i+1))
				require.Error(t, res.Err)
				texts = append(texts, res.Err.Error(), fmt.Sprintf("%+v", res.Err))
			}
			if rc, ok := fx.Channel.(channels.Reconciler); ok {
				now := time.Now()
				if _, err := rc.Accepted(context.Background(), []channels.InDoubt{inDoubt(r.msg(9), now, now)}); err != nil {
					texts = append(texts, err.Error())
				}
			}
			texts = append(texts, logs.String())
			all := strings.Join(texts, "\n")
			for _, s := range fx.Secrets {
				require.NotContains(t, all, s, "a credential in an error or the log")
			}
		})
	}
}

func (k AnswerKind) String() string {
	return [...]string{"Accept", "RateLimited", "ServerError", "Unavailable", "Reject", "Hang", "Drop"}[k]
}
