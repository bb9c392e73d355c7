package macros_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/macros"
)

func TestSMSSegments(t *testing.T) {
	t.Parallel()
	a := func(n int) string { return strings.Repeat("a", n) }
	cases := []struct {
		name     string
		body     string
		encoding string
		units    int
		segments int
	}{
		{"empty", "", macros.GSM7, 0, 0},
		{"one GSM-7 segment", a(160), macros.GSM7, 160, 1},
		{"161 septets need two", a(161), macros.GSM7, 161, 2},
		{"two full concatenated", a(306), macros.GSM7, 306, 2},
		{"one more needs three", a(307), macros.GSM7, 307, 3},
		{"GSM-7 accents stay GSM-7", "Café à Øslo, ÄÖÜ ñ ß É", macros.GSM7, 22, 1},
		{"extension chars cost two septets", a(159) + "€", macros.GSM7, 161, 2},
		{"an escape is never split across segments", a(152) + "€" + a(152), macros.GSM7, 306, 3},
		{"curly quote forces UCS-2", "It’s", macros.UCS2, 4, 1},
		{"70 UCS-2 units fit one", strings.Repeat("ж", 70), macros.UCS2, 70, 1},
		{"71 need two", strings.Repeat("ж", 71), macros.UCS2, 71, 2},
		{"emoji are two units", strings.Repeat("😀", 35), macros.UCS2, 70, 1},
		{"a surrogate pair is never split", strings.Repeat("ж", 66) + "😀" + strings.Repeat("ж", 66), macros.UCS2, 134, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			info := macros.SMS(tc.body)
			require.Equal(t, tc.encoding, info.Encoding)
			require.Equal(t, tc.units, info.Units)
			require.Equal(t, tc.segments, info.Segments)
		})
	}
}

func TestCheckSMS(t *testing.T) {
	t.Parallel()
	_, err := macros.CheckSMS(strings.Repeat("ж", 68*3), 3)
	var le *macros.LimitError
	require.ErrorAs(t, err, &le)
	require.Equal(t, 3, le.Limit)
	require.Equal(t, 4, le.Actual)
	require.Contains(t, err.Error(), "UCS-2")

	info, err := macros.CheckSMS(strings.Repeat("ж", 67*3), 3)
	require.NoError(t, err)
	require.Equal(t, 3, info.Segments)

	_, err = macros.CheckSMS("x", 0)
	require.NoError(t, err, "0 means no limit")
	_, err = macros.CheckSMS("", 0)
	require.ErrorAs(t, err, &le, "an empty body is never sent")
}

func TestCheckPush(t *testing.T) {
	t.Parallel()
	size, err := macros.CheckPush("Hi", "there", map[string]string{"k": "v"}, 0)
	require.NoError(t, err)
	require.Equal(t, len(`{"notification":{"title":"Hi","body":"there"},"data":{"k":"v"}}`), size)

	_, err = macros.CheckPush("t", strings.Repeat("x", 5000), nil, 0)
	var le *macros.LimitError
	require.ErrorAs(t, err, &le)
	require.Equal(t, macros.DefaultPushPayloadLimit, le.Limit)

	_, err = macros.CheckPush("t", strings.Repeat("x", 100), nil, 64)
	require.ErrorAs(t, err, &le)
	require.Equal(t, 64, le.Limit)

	_, err = macros.CheckPush("", "", nil, 0)
	require.ErrorAs(t, err, &le)

	size, err = macros.CheckPush("", "", map[string]string{"silent": "1"}, 0)
	require.NoError(t, err, "a data-only push is allowed")
	require.Equal(t, len(`{"data":{"silent":"1"}}`), size)
}
