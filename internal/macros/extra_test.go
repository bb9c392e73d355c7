package macros_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/macros"
)

// A digest's values (Budget.With) are seen beside the macros: {{count}} is
// not a missing macro under the fail policy, {{#each items}} iterates the
// items in order, and an item's strings are escaped in HTML and count
// against the output limit like macro values.
func TestRenderWithExtraValues(t *testing.T) {
	t.Parallel()
	extra := map[string]any{"count": 2, "items": []any{
		map[string]any{"macros": map[string]any{"WHO": "Ann & Bob"}, "data": map[string]any{"n": 1.0}, "createdTime": int64(5)},
		map[string]any{"macros": map[string]any{"WHO": "Cy"}, "data": nil, "createdTime": int64(6)},
	}}
	tmpl := `{{count}} for {{FNAME}}:{{#each items}} {{macros.WHO}}/{{data.n}}/{{createdTime}}{{/each}}`
	out, err := macros.NewBudget(macros.RenderLimits{}).With(extra).Render(tmpl, map[string]string{"FNAME": "Di"}, macros.HTML, "")
	require.NoError(t, err)
	require.Equal(t, "2 for Di: Ann &amp; Bob/1/5 Cy//6", out)

	_, err = macros.NewBudget(macros.RenderLimits{}).Render(tmpl, map[string]string{"FNAME": "Di"}, macros.HTML, "")
	var missing *macros.MissingError
	require.True(t, errors.As(err, &missing), "without the values, count is a missing macro: %v", err)

	_, err = macros.NewBudget(macros.RenderLimits{MaxOutputBytes: 8}).With(extra).Render(`{{#each items}}{{macros.WHO}}{{/each}}`, nil, macros.Text, "")
	require.ErrorIs(t, err, macros.ErrRenderLimit)
}
