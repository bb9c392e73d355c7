// Package jsonenc writes JSON strings byte for byte as encoding/json does,
// for code that writes a JSON document by hand on a hot path (the intake's
// and the outbox's rows documents, the log redactor's rewrite) and must not
// pay for encoding/json's reflection or allocate.
package jsonenc

import "unicode/utf8"

// AppendString appends s to dst as json.Marshal writes a string: '"', '\\'
// and control characters escaped, '<', '>' and '&' as \u003c, \u003e and
// \u0026, U+2028 and U+2029 as \u2028 and \u2029, and each byte of invalid
// UTF-8 as \ufffd. It allocates only when dst has no room.
func AppendString(dst []byte, s string) []byte {
	return appendString(dst, s, &htmlSafe)
}

// AppendStringNoHTMLEscape appends s to dst as a json.Encoder with
// SetEscapeHTML(false) writes it, which is also how log/slog's JSON handler
// writes a string: as AppendString, but '<', '>' and '&' as they are. Log
// lines use it, so that a redacted value reads as the handler would have
// written it unredacted.
func AppendStringNoHTMLEscape(dst []byte, s string) []byte {
	return appendString(dst, s, &safe)
}

// appendString is encoding/json's appendString: ok says which ASCII bytes
// are written as they are.
func appendString(dst []byte, s string, ok *[utf8.RuneSelf]bool) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if ok[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but not valid JavaScript: encoding/json escapes
			// them for JSONP's sake, so we do.
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// safe holds the ASCII bytes a JSON string holds as they are: all but
// control characters, '"' and '\\'.
var safe = func() (t [utf8.RuneSelf]bool) {
	for c := range t {
		t[c] = c >= 0x20 && c != '"' && c != '\\'
	}
	return t
}()

// htmlSafe is safe less '<', '>' and '&', which encoding/json escapes so
// that JSON embedded in HTML cannot close a script element.
var htmlSafe = func() (t [utf8.RuneSelf]bool) {
	t = safe
	t['<'], t['>'], t['&'] = false, false, false
	return t
}()
