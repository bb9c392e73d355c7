package delivery

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The deliveries of a batch that store the same recipient share one
// decoded value; one whose recipient does not decode is left to sendGroup.
func TestShareRecipientsDecodesEachRecipientOnce(t *testing.T) {
	t.Parallel()
	ann, bob := `{"email": "ann@example.com", "macros": {"FNAME": "Ann"}}`, `{"phone": "+14155550100"}`
	batch := []Claimed{{ID: 1, Recipient: ann}, {ID: 2, Recipient: bob}, {ID: 3, Recipient: ann}, {ID: 4, Recipient: `{"macros": [1]}`}, {ID: 5, Recipient: ann}}
	shareRecipients(batch)
	require.NotNil(t, batch[0].Decoded)
	require.Same(t, batch[0].Decoded, batch[2].Decoded)
	require.Same(t, batch[0].Decoded, batch[4].Decoded)
	require.Equal(t, "Ann", batch[0].Decoded.Macros["FNAME"])
	require.Equal(t, "+14155550100", batch[1].Decoded.Phone)
	require.Nil(t, batch[3].Decoded, "an unreadable recipient fails its delivery in sendGroup")
	_, err := batch[3].recipient()
	require.Error(t, err)
}
