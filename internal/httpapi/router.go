// Package httpapi is the REST edge: the Gin router, authentication and
// permission checks, request decoding, and the one mapping from errors to
// HTTP responses. Domain packages never import it.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/api"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/config"
)

// OnBehalfHeader lets a super admin act for another user; the user id is
// recorded as actOnBehalfOfUser on every envelope the request causes.
const OnBehalfHeader = "X-Act-On-Behalf-Of-User"

// RequestIDHeader carries the request id in and out.
const RequestIDHeader = "X-Request-ID"

// requestIDKey is RequestIDHeader in canonical form: the request id
// middleware uses it with the header maps directly, which spares it two
// canonicalisations (and their allocations) on every request.
const requestIDKey = "X-Request-Id"

// ReadyCheck is one dependency /readyz reports on. A Critical check that
// fails makes the service unready (503); a non-critical one only degrades it.
type ReadyCheck struct {
	Name     string
	Critical bool
	Check    func(ctx context.Context) error
}

// Deps is everything the API serves. A nil service leaves its routes out.
type Deps struct {
	Log      *slog.Logger
	HTTP     config.HTTP
	Verifier *auth.Verifier
	Ready    []ReadyCheck
	// Middleware runs first on every request (tracing, then metrics), so
	// the access log line already carries the trace id.
	Middleware []gin.HandlerFunc
	// Metrics, when set, is served at /metrics without a token, like /healthz.
	Metrics http.Handler

	Collections   CollectionService
	Actions       ActionService
	Notifications NotificationService
	Outbox        OutboxService
	// Feed serves the event feed (GET /v1/feed and its ack and reset).
	Feed FeedService
	// Endpoints is the customer webhook endpoint registry (endpoints.go).
	Endpoints EndpointService
	// Suppressions is the collections' suppression lists (suppressions.go).
	Suppressions SuppressionService
	// Preferences serves the recipient preference routes; Unsubscribe the
	// public one-click unsubscribe routes (preferences.go).
	Preferences PreferenceService
	Unsubscribe UnsubscribeService

	// Webhooks receives provider status reports (routes under /v1/webhooks/,
	// authenticated by the providers' signatures); Preview renders actions
	// without sending (needs Actions).
	Webhooks *Webhooks
	Preview  *PreviewConfig
	// TestSend sends one message of an action now (needs Actions and
	// Preview, whose rate it takes).
	TestSend *TestSendConfig

	// Outage, when set, hears every error a route returns, so a commit that
	// failed because the database is unavailable (which no statement hook
	// sees) makes /readyz not-ready too (store.Outage).
	Outage interface{ Observe(err error) bool }
}

// Server holds the dependencies the handlers use.
type Server struct {
	Deps
	engine *gin.Engine
}

// New builds the HTTP handler.
func New(d Deps) *Server {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	s := &Server{Deps: d, engine: e}
	e.Use(d.Middleware...)
	e.Use(s.requestID, s.accessLog, s.recover, s.limitBody)
	e.NoRoute(func(c *gin.Context) {
		writeError(c, s.Log, apperr.New(apperr.NotFound, "no route %s %s", c.Request.Method, c.Request.URL.Path))
	})
	// gin has set the Allow header by the time NoMethod runs.
	e.NoMethod(func(c *gin.Context) {
		writeError(c, s.Log, apperr.New(apperr.MethodNotAllowed, "method %s is not allowed on %s; use %s",
			c.Request.Method, c.Request.URL.Path, c.Writer.Header().Get("Allow")))
	})

	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	e.GET("/readyz", s.readyz)
	e.GET("/openapi.yaml", func(c *gin.Context) { c.Data(http.StatusOK, "application/yaml", api.OpenAPI) })
	if d.Metrics != nil {
		e.GET("/metrics", gin.WrapH(d.Metrics))
	}

	r := &router{s: s, g: e.Group("/v1")}
	if d.Collections != nil {
		r.collections()
	}
	if d.Actions != nil {
		r.actions()
	}
	if d.Notifications != nil {
		r.notifications()
	}
	if d.Outbox != nil {
		r.outbox()
	}
	if d.Feed != nil {
		r.feed()
	}
	if d.Webhooks != nil {
		r.webhooks()
	}
	if d.Endpoints != nil {
		r.endpoints()
	}
	if d.Suppressions != nil {
		r.suppressions()
	}
	if d.Preferences != nil {
		r.preferences()
	}
	if d.Unsubscribe != nil {
		// Outside /v1: the links in emails must outlive API versions.
		(&router{s: s, g: e.Group("")}).unsubscribe()
	}
	if d.Preview != nil && d.Actions != nil {
		r.preview()
		if d.TestSend != nil {
			r.testSend()
		}
	}
	return s
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.engine.ServeHTTP(w, r) }

// Routes lists the registered routes, for the OpenAPI contract test.
func (s *Server) Routes() gin.RoutesInfo { return s.engine.Routes() }

// access is what a route demands of the caller: the route's permission.
// Authorization lives here, at the edge, and only here: every /v1 route is
// registered through router.handle with one access value, which the
// router checks before the handler runs. The domain services trust their
// caller; they scope what a list shows to the principal (ListCollections)
// but never refuse a request (docs/architecture.md, "Authorization").
//
// The zero value is not a permission, so a route built without one panics
// at startup rather than falling open.
type access int

const (
	authenticated    access = iota + 1 // any valid token; the handler shows only what the caller may read
	superAdminOnly                     // ROLE_SUPER_ADMIN
	readCollection                     // may read the :collectionId in the path
	manageCollection                   // may change the :collectionId in the path
	sendCollection                     // may send through the :collectionId in the path
	public                             // no token; the handler authenticates the request itself (webhook signatures)
)

// handlerFunc is a route handler. It writes its own success response and
// returns errors for writeError.
type handlerFunc func(c *gin.Context, p auth.Principal) error

type router struct {
	s *Server
	g *gin.RouterGroup
}

// handle registers a route with its permission; it is the one way a /v1
// route is added (one line: method, path, response-code prefix, permission,
// handler). code is the route's response-code prefix.
func (r *router) handle(method, path, code string, acc access, fn handlerFunc) {
	if acc < authenticated || acc > public {
		panic(fmt.Sprintf("httpapi: route %s %s has no permission", method, path))
	}
	r.g.Handle(method, path, func(c *gin.Context) {
		state(c).code = code
		var p auth.Principal
		if acc != public {
			var err error
			if p, err = r.s.authorize(c, acc); err != nil {
				writeError(c, r.s.Log, err)
				return
			}
		}
		if err := checkParams(c); err != nil {
			writeError(c, r.s.Log, err)
			return
		}
		if err := fn(c, p); err != nil {
			if r.s.Outage != nil {
				r.s.Outage.Observe(err)
			}
			writeError(c, r.s.Log, err)
		}
	})
}

// authorize authenticates the request and checks acc. 401 without a valid
// token; 403 with a valid token that lacks the right.
func (s *Server) authorize(c *gin.Context, acc access) (auth.Principal, error) {
	p, err := s.Verifier.Verify(auth.BearerToken(c.GetHeader("Authorization")))
	if err != nil {
		c.Header("WWW-Authenticate", `Bearer realm="notificationservice"`)
		if errors.Is(err, auth.ErrMissingToken) {
			return p, apperr.New(apperr.Unauthenticated, "a bearer token is required")
		}
		return p, apperr.New(apperr.Unauthenticated, "the bearer token is invalid or expired")
	}
	if raw := c.GetHeader(OnBehalfHeader); raw != "" {
		if !p.SuperAdmin() {
			return p, apperr.New(apperr.PermissionDenied, "only a super admin may act on behalf of another user")
		}
		id, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || id <= 0 {
			return p, apperr.Invalid("header "+OnBehalfHeader+" is invalid",
				apperr.Detail{Field: OnBehalfHeader, Reason: "must be a positive integer user id"})
		}
		p.OnBehalfOf = id
	}
	state(c).userID = p.UserID
	switch acc {
	case authenticated:
		return p, nil
	case superAdminOnly:
		if !p.SuperAdmin() {
			return p, apperr.New(apperr.PermissionDenied, "this operation needs %s", auth.RoleSuperAdmin)
		}
		return p, nil
	}
	cid, err := pathID(c, "collectionId")
	if err != nil {
		return p, err
	}
	var ok bool
	switch acc {
	case readCollection:
		ok = p.CanRead(cid)
	case manageCollection:
		ok = p.CanManage(cid)
	case sendCollection:
		ok = p.CanSend(cid)
	}
	if !ok {
		return p, apperr.New(apperr.PermissionDenied, "the caller may not do this in collection %d", cid)
	}
	return p, nil
}

func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 3*time.Second)
	defer cancel()
	checks := map[string]string{}
	status, code := "ready", http.StatusOK
	for _, rc := range s.Ready {
		if err := rc.Check(ctx); err != nil {
			checks[rc.Name] = err.Error()
			if rc.Critical {
				status, code = "unavailable", http.StatusServiceUnavailable
			} else if code == http.StatusOK {
				status = "degraded"
			}
			continue
		}
		checks[rc.Name] = "ok"
	}
	c.JSON(code, gin.H{"status": status, "checks": checks})
}

// reqState is what the middleware chain and the route wrapper learn about
// one request: its id, the route's response-code prefix, the caller and the
// attributes a handler adds to the access log line. It is one allocation
// under one context key; a c.Set per value boxed each string into an
// interface, an allocation apiece on every request.
type reqState struct {
	requestID string
	code      string
	userID    string
	logAttrs  []slog.Attr
}

// stateKey holds the request's *reqState in the gin context.
const stateKey = "notify.request"

// state returns the request's state, making it if no middleware has (a
// handler served outside the router's chain).
func state(c *gin.Context) *reqState {
	if v, ok := c.Get(stateKey); ok {
		if st, ok := v.(*reqState); ok {
			return st
		}
	}
	st := &reqState{}
	c.Set(stateKey, st)
	return st
}

func (s *Server) requestID(c *gin.Context) {
	id := c.Request.Header.Get(requestIDKey)
	if id == "" || len(id) > 128 {
		id = newRequestID()
	}
	c.Set(stateKey, &reqState{requestID: id})
	c.Writer.Header()[requestIDKey] = []string{id}
	c.Next()
}

// newRequestID is 16 random hex digits.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func requestID(c *gin.Context) string { return state(c).requestID }

func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	st := state(c)
	attrs := []slog.Attr{
		slog.String("requestId", st.requestID),
		slog.String("method", c.Request.Method),
		slog.String("route", route),
		slog.Int("status", c.Writer.Status()),
		slog.Duration("duration", time.Since(start)),
		slog.String("userId", st.userID),
	}
	attrs = append(attrs, st.logAttrs...)
	s.Log.LogAttrs(c.Request.Context(), slog.LevelInfo, "http request", attrs...)
}

// setLogAttrs adds attrs to the request's access log line: what a route
// knows that says whose request it was (a send's producer headers).
func setLogAttrs(c *gin.Context, attrs ...slog.Attr) {
	if len(attrs) == 0 {
		return
	}
	st := state(c)
	st.logAttrs = append(st.logAttrs, attrs...)
}

func (s *Server) recover(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			writeError(c, s.Log, &apperr.Error{Kind: apperr.Internal, Message: "panic", Err: fmt.Errorf("panic: %v", v)})
		}
	}()
	c.Next()
}

// limitBody caps every request body; decodeJSON turns the overflow into
// INVALID_ARGUMENT.
func (s *Server) limitBody(c *gin.Context) {
	// A request without a body (a GET) has http.NoBody, which cannot
	// overflow: wrapping it cost an allocation on every GET.
	if c.Request.Body != nil && c.Request.Body != http.NoBody {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.HTTP.MaxBodyBytes)
	}
	c.Next()
}
