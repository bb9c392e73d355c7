package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/store"
)

// httpStatus is the one table that maps error kinds to HTTP statuses.
var httpStatus = map[apperr.Kind]int{
	apperr.InvalidArgument:    http.StatusBadRequest,
	apperr.Unauthenticated:    http.StatusUnauthorized,
	apperr.PermissionDenied:   http.StatusForbidden,
	apperr.NotFound:           http.StatusNotFound,
	apperr.AlreadyExists:      http.StatusConflict,
	apperr.FailedPrecondition: http.StatusConflict,
	apperr.PreconditionFailed: http.StatusPreconditionFailed,
	apperr.Unavailable:        http.StatusServiceUnavailable,
	apperr.ResourceExhausted:  http.StatusTooManyRequests,
	apperr.MethodNotAllowed:   http.StatusMethodNotAllowed,
	apperr.Internal:           http.StatusInternalServerError,
}

// ErrorBody is the body of every error response. Message repeats
// ResponseMessage so the body is also the {status, message, details} error of
// the gateway spec (seed 004), for clients written against either.
type ErrorBody struct {
	Status          string          `json:"status"`
	ResponseCode    string          `json:"responseCode"`
	ResponseMessage string          `json:"responseMessage"`
	Message         string          `json:"message"`
	Details         []apperr.Detail `json:"details"`
}

// ResponseCode joins a route's code prefix (such as NOACCRT, "create action")
// and an HTTP status: NOACCRT0400. Success codes end in 0000, as the event
// catalogue's delete payloads do. docs/errors.md lists the prefixes.
func ResponseCode(prefix string, status int) string {
	if status < 300 {
		status = 0
	}
	return fmt.Sprintf("%s%04d", prefix, status)
}

// unavailableRetryAfter is the Retry-After, in seconds, of a 503 for a
// database that is down, full or busy: about one SQLite busy timeout, a
// consumer retry interval.
const unavailableRetryAfter = "5"

// writeError renders err as the error body, with the route's code prefix.
// Internal errors are logged here, once, and never shown to the caller.
// An error the store classifies as unavailability (the database is down,
// full, read-only, shutting down or busy: store.IsUnavailable), from any
// route, is UNAVAILABLE (503) with Retry-After, never INTERNAL.
func writeError(c *gin.Context, log *slog.Logger, err error) {
	e, ok := apperr.As(err)
	if (!ok || e.Kind == apperr.Internal) && store.IsUnavailable(err) {
		e = &apperr.Error{Kind: apperr.Unavailable, Message: "the database is unavailable (down, full or busy); retry later", Err: err}
	}
	if e == nil {
		e = &apperr.Error{Kind: apperr.Internal, Err: err}
	}
	status := httpStatus[e.Kind]
	msg := e.Message
	switch e.Kind {
	case apperr.Internal:
		log.ErrorContext(c.Request.Context(), "request failed", "error", err, "requestId", requestID(c))
		msg = "internal error; quote requestId " + requestID(c) + " when reporting it"
	case apperr.Unavailable:
		if c.Writer.Header().Get("Retry-After") == "" {
			c.Header("Retry-After", unavailableRetryAfter)
		}
		log.WarnContext(c.Request.Context(), "request refused: dependency unavailable", "error", err, "requestId", requestID(c))
	}
	details := e.Details
	if details == nil {
		details = []apperr.Detail{}
	}
	prefix := state(c).code
	if prefix == "" {
		prefix = "NOGEN"
	}
	c.AbortWithStatusJSON(status, ErrorBody{
		Status:          e.Kind.String(),
		ResponseCode:    ResponseCode(prefix, status),
		ResponseMessage: msg,
		Message:         msg,
		Details:         details,
	})
}
