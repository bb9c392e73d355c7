package store_test

import (
	"database/sql/driver"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/store"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// Int64s and Texts encode as the binary arrays pgx makes of []int64,
// []int32 and []string, element for element.
func TestArraysEncodeAsPgxSlices(t *testing.T) {
	m := pgtype.NewMap()
	enc := func(oid uint32, v any) []byte {
		t.Helper()
		b, err := m.Encode(oid, pgtype.BinaryFormatCode, v, nil)
		require.NoError(t, err)
		return b
	}
	ints := []int64{0, -1, 1 << 40, 42}
	require.Equal(t, enc(pgtype.Int8ArrayOID, ints), enc(pgtype.Int8ArrayOID, store.Int64s(ints)))
	require.Equal(t, enc(pgtype.Int4ArrayOID, []int32{0, -1, 7}), enc(pgtype.Int4ArrayOID, store.Int64s{0, -1, 7}))
	texts := []string{"", "plain", `"quoted" back\slash`, "é 日本 😀", "{braces},commas"}
	require.Equal(t, enc(pgtype.TextArrayOID, texts), enc(pgtype.TextArrayOID, store.Texts(texts)))
}

// Encoding an array allocates nothing per element: pgx's own slices box
// each element in an interface, which cost the service more than
// PostgreSQL saved (docs/benchmarks.md).
func TestArraysEncodeWithoutAnAllocationPerElement(t *testing.T) {
	m := pgtype.NewMap()
	ints, texts := make(store.Int64s, 1000), make(store.Texts, 1000)
	for i := range ints {
		ints[i], texts[i] = int64(i)<<20, fmt.Sprint("element ", i)
	}
	buf := make([]byte, 0, 64<<10)
	for _, c := range []struct {
		oid uint32
		v   any
	}{{pgtype.Int8ArrayOID, ints}, {pgtype.TextArrayOID, texts}} {
		allocs := testing.AllocsPerRun(20, func() {
			_, err := m.Encode(c.oid, pgtype.BinaryFormatCode, c.v, buf[:0])
			require.NoError(t, err)
		})
		require.LessOrEqual(t, allocs, 4.0, "%T: %v allocations for 1,000 elements", c.v, allocs)
	}
}

// Rows passed as arrays read back on PostgreSQL as they were given, text
// of every kind, invalid UTF-8 as U+FFFD byte by byte (as JSONRows and
// encoding/json have it), and a json column as its text, unparsed; passed by their
// text form (Value, what a driver without arrays would get) they read the
// same.
func TestUnnestRowsReadBack(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	texts := store.Texts{"", "plain", `"quoted" back\slash`, "<b>a & b</b>", "tab\tnl\ncr\r\x01\x1f", "é 日本 😀",
		"bad\xffutf8\xfe\xfd", "{braces},commas NULL"}
	want := []string{"", "plain", `"quoted" back\slash`, "<b>a & b</b>", "tab\tnl\ncr\r\x01\x1f", "é 日本 😀",
		"bad\ufffdutf8\ufffd\ufffd", "{braces},commas NULL"}
	ids := make(store.Int64s, len(texts))
	small := make(store.Int64s, len(texts))
	docs, oks := make(store.Texts, len(texts)), make(store.Texts, len(texts))
	for i := range texts {
		ids[i], small[i], docs[i], oks[i] = int64(i)<<33, int64(-i), fmt.Sprintf(`{"i":  %d}`, i), fmt.Sprint(i%2 == 0)
	}
	cols := store.Columns("id bigint", "n integer", "s text", "doc json", "ok boolean")
	sel, from := store.UnnestRows(cols)
	type row struct {
		ID  int64
		N   int
		S   string
		Doc string
		OK  bool
	}
	for _, textForm := range []bool{false, true} {
		args := []any{ids, small, texts, docs, oks}
		if textForm {
			args = args[:0]
			for _, a := range []driver.Valuer{ids, small, texts, docs, oks} {
				v, err := a.Value()
				require.NoError(t, err)
				args = append(args, v)
			}
		}
		var got []row
		require.NoError(t, db.Raw("SELECT "+sel+" FROM "+from, args...).Scan(&got).Error)
		require.Len(t, got, len(texts))
		for i, r := range got {
			require.Equal(t, row{ids[i], -i, want[i], docs[i], i%2 == 0}, r, "row %d, text form %v", i, textForm)
		}
	}
}

// With RegisterArrays, Texts and Int64s encode to the bytes pgx's own
// plans write, and the parameter's buffer grows once, not element by
// element from the 256 bytes pgx gives each statement.
func TestRegisteredArrayPlansWriteWhatPgxWrites(t *testing.T) {
	plain, registered := pgtype.NewMap(), pgtype.NewMap()
	store.RegisterArrays(registered)
	long := make(store.Texts, 1000)
	for i := range long {
		long[i] = fmt.Sprint("a message of some length, number ", i)
	}
	for _, c := range []struct {
		oid uint32
		v   any
	}{
		{pgtype.TextArrayOID, store.Texts{}},
		{pgtype.TextArrayOID, store.Texts{"", "plain", "é 日本 😀", "bad\xffutf8\xfe", `"quoted" back\slash`}},
		{pgtype.TextArrayOID, long},
		{pgtype.Int8ArrayOID, store.Int64s{}},
		{pgtype.Int8ArrayOID, store.Int64s{0, -1, 1 << 40, -1 << 63}},
		{pgtype.Int4ArrayOID, store.Int64s{0, -1, 7}}, // pgx's plan, registered or not
	} {
		want, err := plain.Encode(c.oid, pgtype.BinaryFormatCode, c.v, nil)
		require.NoError(t, err)
		got, err := registered.Encode(c.oid, pgtype.BinaryFormatCode, c.v, nil)
		require.NoError(t, err)
		require.Equal(t, want, got, "%T %v", c.v, c.v)
	}
	allocs := func(m *pgtype.Map, v store.Texts) float64 {
		return testing.AllocsPerRun(20, func() {
			_, err := m.Encode(pgtype.TextArrayOID, pgtype.BinaryFormatCode, v, make([]byte, 0, 256))
			require.NoError(t, err)
		})
	}
	// Ten texts outgrow the 256 bytes as a thousand do: one growth each
	// (counted without the race detector: the 256 bytes, the slice in an
	// interface and the growth, 3).
	require.Equal(t, allocs(registered, long[:10]), allocs(registered, long))
	require.Greater(t, allocs(plain, long), allocs(plain, long[:10])+10, "pgx's own plan was expected to grow the buffer step by step")
}

// Every PostgreSQL connection Open makes has the array plans registered.
func TestOpenRegistersTheArrayPlans(t *testing.T) {
	t.Parallel()
	db, _ := testdb.Postgres(t)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	conn, err := sqlDB.Conn(t.Context())
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.Raw(func(dc any) error {
		m := dc.(*stdlib.Conn).Conn().TypeMap()
		require.Equal(t, "store.textsPlan", fmt.Sprintf("%T", m.PlanEncode(pgtype.TextArrayOID, pgtype.BinaryFormatCode, store.Texts{})))
		require.Equal(t, "store.int64sPlan", fmt.Sprintf("%T", m.PlanEncode(pgtype.Int8ArrayOID, pgtype.BinaryFormatCode, store.Int64s{})))
		return nil
	}))
}
