package store_test

import (
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/jsonenc"
	"github.com/notificationservice/notificationservice/internal/store"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// A JSONRows document written by hand with jsonenc.AppendString reads back
// as the strings it was written from on both databases: the HTML, line
// separator and control character escapes encoding/json writes included
// (NUL aside: PostgreSQL's text holds none), and invalid UTF-8 as U+FFFD.
func TestJSONRowsReadBackAppendedStrings(t *testing.T) {
	t.Parallel()
	in := []string{"", "plain", `"quoted" back\slash`, "<b>a & b</b>", "line\u2028para\u2029", "tab\tnl\ncr\r\x01\x1f",
		"é 日本 😀", "bad\xffutf8"}
	want := slices.Clone(in)
	want[len(want)-1] = "bad\ufffdutf8"
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		doc := []byte{'['}
		for i, s := range in {
			if i > 0 {
				doc = append(doc, ',')
			}
			doc = append(doc, `{"i":`...)
			doc = strconv.AppendInt(doc, int64(i), 10)
			doc = append(doc, `,"s":`...)
			doc = jsonenc.AppendString(doc, s)
			doc = append(doc, '}')
		}
		doc = append(doc, ']')
		sel, from := store.JSONRows(store.IsPostgres(db), store.Columns("i bigint", "s text"))
		var got []string
		require.NoError(t, db.Raw("SELECT s FROM (SELECT "+sel+" FROM "+from+") r ORDER BY i", string(doc)).Scan(&got).Error)
		require.Equal(t, want, got)
	})
}
