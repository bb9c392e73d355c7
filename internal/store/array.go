package store

import (
	"database/sql/driver"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

// Int64s and Texts are PostgreSQL array parameters, one per column of rows
// that a statement reads with unnest (UnnestRows), in place of one JSON
// document per batch (JSONRows). PostgreSQL unpacks a binary array without
// parsing: json_to_recordset built a table of members for every row, and
// for the intake's deliveries that cost more than the rows' own writes
// (docs/benchmarks.md, "rows as arrays").
//
// They are written here rather than passed as []int64 and []string for two
// reasons. gorm expands a slice argument into a list of parameters; a
// driver.Valuer it binds as one. And pgx encodes a slice through
// pgtype.FlatArray, whose Index returns each element boxed in an interface:
// an allocation per element, which ate what PostgreSQL saved. Index here
// returns a pointer into the slice, which an interface holds without
// allocating, and the pointer's type gives pgx the element through
// Int64Valuer or TextValuer.
//
// pgx finds the array codec by the parameter's type, so the statement casts
// each parameter (CAST(? AS bigint[])); Value, the text form, is only for
// what renders a statement (gorm's logger) or a driver without arrays.
type (
	Int64s []int64
	Texts  []string
)

type (
	int64Elem int64
	textElem  string
)

func (e *int64Elem) Int64Value() (pgtype.Int8, error) {
	return pgtype.Int8{Int64: int64(*e), Valid: true}, nil
}

// TextValue is the element, invalid UTF-8 replaced byte by byte with
// U+FFFD, as encoding/json (and so JSONRows) writes it: PostgreSQL refuses
// a text value that is not valid in the database's encoding, and a
// provider's error text, stored as a reason, can be any bytes.
func (e *textElem) TextValue() (pgtype.Text, error) {
	return pgtype.Text{String: validUTF8(string(*e)), Valid: true}, nil
}

// validUTF8 is s with each byte of invalid UTF-8 replaced by U+FFFD. Not
// strings.ToValidUTF8, which replaces a run of such bytes with one: the two
// dialects would then store different text for the same value.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// dims is the one dimension of a flat array of n elements; nil (the array
// NULL) is never sent: an empty batch has no statement.
func dims(n int) []pgtype.ArrayDimension {
	return []pgtype.ArrayDimension{{Length: int32(n), LowerBound: 1}}
}

func (a Int64s) Dimensions() []pgtype.ArrayDimension { return dims(len(a)) }
func (a Int64s) Index(i int) any                     { return (*int64Elem)(&a[i]) }
func (a Int64s) IndexType() any                      { return (*int64Elem)(nil) }

// Value is the array's text form, {1,2,3}.
func (a Int64s) Value() (driver.Value, error) {
	b := make([]byte, 0, 2+len(a)*8)
	b = append(b, '{')
	for i, n := range a {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, n, 10)
	}
	return string(append(b, '}')), nil
}

func (a Texts) Dimensions() []pgtype.ArrayDimension { return dims(len(a)) }
func (a Texts) Index(i int) any                     { return (*textElem)(&a[i]) }
func (a Texts) IndexType() any                      { return (*textElem)(nil) }

// Value is the array's text form, every element quoted: {"a","b \"c\""}.
func (a Texts) Value() (driver.Value, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, s := range a {
		if i > 0 {
			b.WriteByte(',')
		}
		s = validUTF8(s)
		b.WriteByte('"')
		for j := 0; j < len(s); j++ {
			if s[j] == '"' || s[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String(), nil
}

// BatchRows returns the SELECT list and FROM clause of a batch statement's
// rows: one array parameter per column on PostgreSQL (UnnestRows), one
// JSON document elsewhere (JSONRows). The caller passes the arguments of
// the same form.
func BatchRows(pg bool, cols []Column) (sel, from string) {
	if pg {
		return UnnestRows(cols)
	}
	return JSONRows(false, cols)
}

// UnnestRows returns the SELECT list and FROM clause that read rows passed
// as one array parameter per column, in the order of cols, on PostgreSQL:
// an integer column as Int64s, any other as Texts (cast to its type unless
// it is text or json). Like JSONRows, the statement's text is the same for
// every batch size.
func UnnestRows(cols []Column) (sel, from string) {
	var s, f, names strings.Builder
	for i, c := range cols {
		if i > 0 {
			s.WriteString(", ")
			f.WriteString(", ")
			names.WriteString(", ")
		}
		names.WriteString(c.Name)
		switch c.PGType {
		case "bigint", "integer", "smallint":
			s.WriteString("v." + c.Name)
			f.WriteString("CAST(? AS " + c.PGType + "[])")
		case "text", "json":
			// JSON is stored as TEXT (a json column would be parsed on
			// the way in for nothing; jsonb reorders keys), and these
			// documents are the service's own encoding: no cast, no
			// parse. JSONRows types them json only to embed them as is.
			s.WriteString("v." + c.Name)
			f.WriteString("CAST(? AS text[])")
		default:
			s.WriteString("CAST(v." + c.Name + " AS " + c.PGType + ")")
			f.WriteString("CAST(? AS text[])")
		}
	}
	return s.String(), "unnest(" + f.String() + ") AS v(" + names.String() + ")"
}

// RegisterArrays has m encode Texts as text[] and Int64s as bigint[] with
// plans of this package, each of which sizes the parameter's buffer once
// and writes PostgreSQL's binary array into it. pgx's array codec appends
// element by element to a buffer it shrinks back to 256 bytes after each
// statement, and append grows a large buffer by a quarter at a time: a
// batch of sandbox messages (some 190 kB in the drain) was copied about five
// times over, runtime.memmove 6% of the drain's CPU (docs/benchmarks.md).
// Every other value, and every decode, is pgx's codec's. Open registers it
// on every PostgreSQL connection; without it the arrays encode the same
// bytes through pgx's own plans.
func RegisterArrays(m *pgtype.Map) {
	for _, oid := range []uint32{pgtype.TextArrayOID, pgtype.Int8ArrayOID} {
		if t, ok := m.TypeForOID(oid); ok {
			m.RegisterType(&pgtype.Type{Name: t.Name, OID: t.OID, Codec: arrayCodec{Codec: t.Codec}})
		}
	}
}

// arrayCodec is pgx's codec for an array type, but for the encoding of
// Texts and Int64s in binary.
type arrayCodec struct{ pgtype.Codec }

func (c arrayCodec) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if format == pgtype.BinaryFormatCode {
		switch value.(type) {
		case Texts:
			if oid == pgtype.TextArrayOID {
				return textsPlan{}
			}
		case Int64s:
			if oid == pgtype.Int8ArrayOID {
				return int64sPlan{}
			}
		}
	}
	return c.Codec.PlanEncode(m, oid, format, value)
}

// arrayHeader appends the header of a one-dimensional array of n elements
// of type elem, none NULL, as pgx's codec writes it.
func arrayHeader(buf []byte, elem uint32, n int) []byte {
	buf = binary.BigEndian.AppendUint32(buf, 1) // dimensions
	buf = binary.BigEndian.AppendUint32(buf, 0) // has NULLs
	buf = binary.BigEndian.AppendUint32(buf, elem)
	buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	return binary.BigEndian.AppendUint32(buf, 1) // lower bound
}

type textsPlan struct{}

func (textsPlan) Encode(value any, buf []byte) ([]byte, error) {
	a := value.(Texts)
	size := 20 + 4*len(a)
	for _, s := range a {
		size += len(s) // a string with invalid UTF-8 (rare) grows as it is mended
	}
	buf = arrayHeader(slices.Grow(buf, size), pgtype.TextOID, len(a))
	for _, s := range a {
		s = validUTF8(s)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
		buf = append(buf, s...)
	}
	return buf, nil
}

type int64sPlan struct{}

func (int64sPlan) Encode(value any, buf []byte) ([]byte, error) {
	a := value.(Int64s)
	buf = arrayHeader(slices.Grow(buf, 20+12*len(a)), pgtype.Int8OID, len(a))
	for _, n := range a {
		buf = binary.BigEndian.AppendUint32(buf, 8)
		buf = binary.BigEndian.AppendUint64(buf, uint64(n))
	}
	return buf, nil
}
