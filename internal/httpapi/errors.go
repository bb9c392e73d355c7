package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/apperr"
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
	apperr.MethodNotAllowed:   http.StatusMethodNotAllowed,
	apperr.Internal:           http.StatusInternalServerError,
}

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Status          string          `json:"status"`
	ResponseCode    string          `json:"responseCode"`
	ResponseMessage string          `json:"responseMessage"`
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

const ctxCodeKey = "notify.responseCode"

// writeError renders err as the error body, with the route's code prefix.
// Internal errors are logged here, once, and never shown to the caller.
func writeError(c *gin.Context, log *slog.Logger, err error) {
	e, ok := apperr.As(err)
	if !ok {
		e = &apperr.Error{Kind: apperr.Internal, Err: err}
	}
	status := httpStatus[e.Kind]
	msg := e.Message
	if e.Kind == apperr.Internal {
		log.ErrorContext(c.Request.Context(), "request failed", "error", err, "requestId", requestID(c))
		msg = "internal error; quote requestId " + requestID(c) + " when reporting it"
	}
	details := e.Details
	if details == nil {
		details = []apperr.Detail{}
	}
	prefix := c.GetString(ctxCodeKey)
	if prefix == "" {
		prefix = "NOGEN"
	}
	c.AbortWithStatusJSON(status, ErrorBody{
		Status:          e.Kind.String(),
		ResponseCode:    ResponseCode(prefix, status),
		ResponseMessage: msg,
		Details:         details,
	})
}
