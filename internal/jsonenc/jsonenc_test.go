package jsonenc_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/jsonenc"
)

// seeds cover every ASCII byte, the HTML bytes, multi-byte UTF-8, U+2028
// and U+2029 (and their neighbours), and invalid UTF-8: a lone continuation
// byte, a truncated sequence, an overlong one and a surrogate.
var seeds = []string{
	"", "plain", asciiBytes(), `tab	"quoted" back\slash`, "<b>a & b</b>",
	"é ü 日本 😀", "\u2027\u2028\u2029\u202a", "\xe2\x80", "\x80", "caf\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xff\xfe ok",
	"\x00\x01\x1f\x7f\b\f\n\r\t",
}

func asciiBytes() string {
	var b strings.Builder
	for c := range 0x80 {
		b.WriteByte(byte(c))
	}
	return b.String()
}

// marshal is the reference for AppendString.
func marshal(t testing.TB, s string) string {
	b, err := json.Marshal(s)
	require.NoError(t, err)
	return string(b)
}

// encodeNoHTML is the reference for AppendStringNoHTMLEscape.
func encodeNoHTML(t testing.TB, s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	require.NoError(t, enc.Encode(s))
	return strings.TrimSuffix(buf.String(), "\n")
}

func check(t testing.TB, s string) {
	got := jsonenc.AppendString([]byte("x"), s)
	require.Equal(t, "x"+marshal(t, s), string(got), "AppendString(%q)", s)
	got = jsonenc.AppendStringNoHTMLEscape([]byte("x"), s)
	require.Equal(t, "x"+encodeNoHTML(t, s), string(got), "AppendStringNoHTMLEscape(%q)", s)
}

// Both functions write exactly encoding/json's bytes, so every caller is
// correct by construction: the database decodes the rows documents, and a
// redacted log line reads as slog would have written it.
func FuzzMatchesEncodingJSON(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { check(t, s) })
}

func TestMatchesEncodingJSONOnSeeds(t *testing.T) {
	t.Parallel()
	for _, s := range seeds {
		check(t, s)
	}
	// Every rune of the Basic Multilingual Plane (surrogates as invalid
	// UTF-8) and every two-byte string: what the seeds do not reach, without
	// a fuzzing run.
	for r := range rune(0x10000) {
		check(t, "a"+string(r)+"z")
	}
	for i := range 1 << 16 {
		check(t, string([]byte{byte(i >> 8), byte(i)}))
	}
}

// Appending into a buffer with room allocates nothing, escapes or not.
func TestAppendDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 1024)
	for _, s := range []string{benchASCII, benchEscapes, benchHTML, benchUnicode, "bad \xff utf8"} {
		allocs := testing.AllocsPerRun(100, func() {
			buf = jsonenc.AppendString(buf[:0], s)
			buf = jsonenc.AppendStringNoHTMLEscape(buf[:0], s)
		})
		require.Zero(t, allocs, "%q", s)
	}
}

// The benchmark strings: an envelope-like ASCII value (the common case),
// one with quotes, newlines and a backslash to escape, one with HTML (which
// only AppendString escapes), and non-ASCII text.
const (
	benchASCII   = "USER_INVITEUSER externalevents1709786394020@gmail.com 000816c3-e9b2-440b-8d27-dfaa4cae00ef en_US"
	benchEscapes = "line one\nline \"two\"\tindented, a back\\slash and a CRLF\r\n"
	benchHTML    = "<p>Hi <b>Jane</b> & welcome</p>"
	benchUnicode = "Grüße aus Köln — 日本語のテキスト 😀 Ça va? ñandú"
)

var benchCases = []struct{ name, s string }{
	{"ascii", benchASCII}, {"escapes", benchEscapes}, {"html", benchHTML}, {"unicode", benchUnicode},
}

// BenchmarkAppend appends each string into a buffer with room, with each
// function; BenchmarkMarshal is the same strings through json.Marshal.
func BenchmarkAppend(b *testing.B) {
	for _, f := range []struct {
		name   string
		append func([]byte, string) []byte
	}{{"html", jsonenc.AppendString}, {"nohtml", jsonenc.AppendStringNoHTMLEscape}} {
		for _, c := range benchCases {
			b.Run(f.name+"/"+c.name, func(b *testing.B) {
				buf := make([]byte, 0, 1024)
				b.SetBytes(int64(len(c.s)))
				b.ReportAllocs()
				for b.Loop() {
					buf = f.append(buf[:0], c.s)
				}
			})
		}
	}
}

// BenchmarkMarshal is encoding/json's cost for the same strings, for scale.
func BenchmarkMarshal(b *testing.B) {
	for _, c := range benchCases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.s)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := json.Marshal(c.s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
