package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The byte scanner in json must write exactly what the decoder-based
// rewrite wrote, for every valid document: same redaction, same escaping,
// same member order. The seeds cover the envelope, escapes, non-ASCII,
// invalid UTF-8, U+2028, numbers under secret and address keys, and nesting.
func FuzzJSONRewriteMatchesDecoder(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add(s)
	}
	r := newRedactor([]string{"s3cr3t-value-1", "another-secret-2"})
	f.Fuzz(func(t *testing.T, doc string) {
		if !json.Valid([]byte(doc)) {
			return
		}
		want, wantErr := decoderJSON(r, "detail", []byte(doc))
		got, err := r.json("detail", doc)
		if wantErr != nil {
			require.Error(t, err, "the decoder refused %q", doc)
			return
		}
		require.NoError(t, err, doc)
		require.Equal(t, string(want), string(got), doc)
	})
}

func TestJSONRewriteMatchesDecoderOnSeeds(t *testing.T) {
	t.Parallel()
	r := newRedactor([]string{"s3cr3t-value-1", "another-secret-2"})
	for _, doc := range jsonSeeds {
		want, err := decoderJSON(r, "detail", []byte(doc))
		require.NoError(t, err, doc)
		got, err := r.json("detail", doc)
		require.NoError(t, err, doc)
		require.Equal(t, string(want), string(got), doc)
	}
	_, err := r.json("detail", `{"a":`)
	require.Error(t, err)
}

var jsonSeeds = []string{
	`{"id":"USER_INVITEUSER","timestamp":1709786395165,"payload":{"notification":{"name":"USER_INVITEUSER","recipients":[{"email":"externalevents1709786394020@gmail.com","phone":"409-685-4167","pushId":"hj7sdf67sqc9","locale":"en_US","macros":{"FNAME":"John"}}]}},"collectionId":"772","eventType":"notificationservice/notifications/send","userId":"1","actOnBehalfOfUser":0,"roles":["ROLE_SUPER_ADMIN"],"channel":"CSR","envelopeId":"00000000-0000-4000-8000-000000000001","entityId":"000816c3-e9b2-440b-8d27-dfaa4cae00ef","correlation":{"customer_id":"000816c3-e9b2-440b-8d27-dfaa4cae00ef","requestId":"4f6c1d2e9a0b3c5d"}}`,
	` { "Password" : 12345 , "phone": 4096854167, "to": ["a@b.co", 14155550123, "x"], "nested": [[1, 2.5e-3, -0], {}, []], "ok": true, "no": false, "nil": null } `,
	`{"note":"tab\there \"quoted\" back\\slash \u003cb\u003e \u00e9t\u00e9 \ud83d\ude00","k\u00e9y":"v"}`,
	"{\"raw\":\"caf\u00e9 \u2028 line \u2029\",\"bad\":\"\xff\xfe ok\"}",
	`{"auth":"Bearer abc.def.ghi","jwt":"eyJhbGciOi.eyJzdWIi.sig","sg":"SG.abcdefghijkl.mnopqrstuvwx","secret":{"a":"b"},"my_secret":["x",1],"t":"s3cr3t-value-1 and another-secret-2"}`,
	`"just a string with jane.doe@example.com"`,
	`[1,"two",{"three":3}]`,
	`12`, `null`, `true`, `""`, `{}`, `[]`,
	`{"TO":"+1 (415) 555-0123","Address":"12 Main St","devicetoken":"abcdefghijk","pushToken":"abc"}`,
	"{\"ctl\":\"\\u0001\\u001f\\b\\f\\n\\r\"}",
}

var _ = fmt.Sprint
var _ = io.EOF
var _ = errors.New
var _ = bytes.NewReader
var _ = strings.ToLower

// decoderJSON is the rewrite before the byte scanner: json.Decoder.Token
// by token. It is kept as the reference the scanner must match.
func decoderJSON(r *redactor, key string, raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out bytes.Buffer
	type frame struct {
		object    bool
		expectKey bool
		n         int
		key       string
	}
	stack := []frame{{key: key}}
	writeString := func(s string) error {
		enc := json.NewEncoder(&out)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			return err
		}
		out.Truncate(out.Len() - 1) // Encode's newline
		return nil
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		top := &stack[len(stack)-1]
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			out.WriteByte(byte(d))
			stack = stack[:len(stack)-1]
			parent := &stack[len(stack)-1]
			parent.n++
			parent.expectKey = parent.object
			continue
		}
		if top.object && top.expectKey {
			if top.n > 0 {
				out.WriteByte(',')
			}
			k, _ := tok.(string)
			top.key = strings.ToLower(k)
			if err := writeString(k); err != nil {
				return nil, err
			}
			out.WriteByte(':')
			top.expectKey = false
			continue
		}
		if !top.object && top.n > 0 && len(stack) > 1 {
			out.WriteByte(',')
		}
		switch t := tok.(type) {
		case json.Delim:
			out.WriteByte(byte(t))
			stack = append(stack, frame{object: t == '{', expectKey: t == '{', key: top.key})
			continue
		case string:
			if err := writeString(r.field(top.key, t)); err != nil {
				return nil, err
			}
		case json.Number:
			switch {
			case secretKey(top.key):
				out.WriteString(`"` + Redacted + `"`)
			case addressKey(top.key):
				if err := writeString(maskAddress(t.String())); err != nil {
					return nil, err
				}
			default:
				out.WriteString(t.String())
			}
		case bool:
			fmt.Fprint(&out, t)
		case nil:
			out.WriteString("null")
		}
		top.n++
		top.expectKey = top.object
	}
	return out.Bytes(), nil
}
