package httpapi

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/apperr"
)

// listRoute is one keyset-paged list route (collections, events, actions,
// notifications, deliveries, envelopes): what differs between them is
// declared here, and serve does what they share, so every list refuses
// unknown query parameters, reports bad parameters and pages the same way.
type listRoute[F, T any] struct {
	key     string   // the response field the items go in
	filters []string // the query parameters it takes besides limit and cursor
	// filter reads the filters; its INVALID_ARGUMENT error is reported
	// together with the page's, so one response names every bad parameter.
	filter func(c *gin.Context) (F, error)
	// read returns at most pg.Limit rows after pg.After matching f.
	read func(ctx context.Context, f F, pg Page) ([]T, error)
	id   func(T) int64
	// exact: read is asked for the page's limit, and a full page carries a
	// cursor even when it is the last (the notification and delivery lists).
	// Otherwise read is asked for one row more, which says whether a next
	// page exists without a second query.
	exact bool
}

// serve answers the list request: {key: items, "nextCursor": cursor}.
func (l listRoute[F, T]) serve(c *gin.Context) error {
	if err := allowQuery(c, append([]string{"limit", "cursor"}, l.filters...)...); err != nil {
		return err
	}
	pg, pageErr := pageParams(c)
	f, filterErr := l.filter(c)
	switch {
	case pageErr != nil && filterErr != nil:
		var all apperr.Fields
		all.Collect(pageErr)
		all.Collect(filterErr)
		return all.Err()
	case pageErr != nil:
		return pageErr
	case filterErr != nil:
		return filterErr
	}
	ask := pg
	if !l.exact {
		ask.Limit++
	}
	list, err := l.read(c.Request.Context(), f, ask)
	if err != nil {
		return err
	}
	var next string
	if l.exact {
		var last int64
		if len(list) > 0 {
			last = l.id(list[len(list)-1])
		}
		next = nextCursor(pg, len(list), last)
	} else {
		list, next = trimPage(list, pg, l.id)
	}
	c.JSON(http.StatusOK, gin.H{l.key: list, "nextCursor": next})
	return nil
}

// trimPage takes a list read with one row more than pg asks for, drops that
// extra row and returns the cursor of the next page: "" when the extra row
// was not there, so the last page says it is the last without a second query.
func trimPage[T any](list []T, pg Page, id func(T) int64) ([]T, string) {
	if len(list) <= pg.Limit {
		return list, ""
	}
	list = list[:pg.Limit]
	return list, nextCursor(pg, len(list), id(list[len(list)-1]))
}
