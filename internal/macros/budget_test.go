package macros_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/macros"
)

// flatMacros is n macros M00…, the shape of a recipient's macros.
func flatMacros(n int) map[string]string {
	vars := make(map[string]string, n)
	for i := range n {
		vars[fmt.Sprintf("M%02d", i)] = "v"
	}
	return vars
}

// nestedEach loops over the macros depth times inside itself: n^depth
// iterations, the template that took 53.7 s of CPU in one preview.
func nestedEach(depth int, body string) string {
	return strings.Repeat("{{#each @root}}", depth) + body + strings.Repeat("{{/each}}", depth)
}

func TestRenderStopsNestedEachOverRoot(t *testing.T) {
	t.Parallel()
	vars := flatMacros(20)
	// 20^4 = 160,000 iterations; every one is a step, so the render stops
	// at the step limit whether or not the loops print anything.
	for _, body := range []string{"", "x", "{{this}}"} {
		_, err := macros.Render(nestedEach(4, body), vars, macros.Text, macros.MissingBlank)
		require.ErrorIs(t, err, macros.ErrRenderLimit, "body %q", body)
		var le *macros.LimitError
		require.ErrorAs(t, err, &le)
		require.Equal(t, macros.WhatRender, le.What)
		require.True(t, macros.IsPermanent(err))
	}
	// The same loop, one level deep, renders (in sorted key order).
	out, err := macros.Render("{{#each @root}}{{@key}}={{this}};{{/each}}", map[string]string{"B": "2", "A": "1"}, macros.Text, "")
	require.NoError(t, err)
	require.Equal(t, "A=1;B=2;", out)
}

func TestRenderStopsAtOutputLimit(t *testing.T) {
	t.Parallel()
	// A 50 KB value printed 200 times is a 10 MB message from a 54 KB send.
	vars := map[string]string{"V": strings.Repeat("a", 50<<10)}
	tmpl := strings.Repeat("{{V}}", 200)
	// No deadline in reach: the test is about the output limit, whatever the
	// machine's load.
	lim := macros.RenderLimits{Timeout: time.Hour}
	for _, mode := range []macros.Mode{macros.Text, macros.HTML} {
		out, err := macros.NewBudget(lim).Render(tmpl, vars, mode, "")
		require.ErrorIs(t, err, macros.ErrRenderLimit)
		require.Contains(t, err.Error(), "render_limit: output exceeds 1048576 bytes")
		require.Empty(t, out)
	}
	// Literal text repeated by a loop counts too.
	_, err := macros.NewBudget(macros.RenderLimits{MaxOutputBytes: 1000, Timeout: time.Hour}).Render(
		"{{#each @root}}"+strings.Repeat("x", 100)+"{{/each}}", flatMacros(20), macros.Text, "")
	require.ErrorIs(t, err, macros.ErrRenderLimit)

	// The fields of one message share the budget.
	b := macros.NewBudget(macros.RenderLimits{MaxOutputBytes: 100, Timeout: time.Hour})
	_, err = b.Render("{{V}}", map[string]string{"V": strings.Repeat("a", 60)}, macros.Text, "")
	require.NoError(t, err)
	_, err = b.Render("{{V}}", map[string]string{"V": strings.Repeat("a", 60)}, macros.Text, "")
	require.ErrorIs(t, err, macros.ErrRenderLimit, "second field: 120 bytes in all")
}

func TestRenderLimits(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("{{#if A}}", 20) + "x" + strings.Repeat("{{/if}}", 20)
	cases := []struct {
		name   string
		lim    macros.RenderLimits
		tmpl   string
		reason string
	}{
		{"depth", macros.RenderLimits{Timeout: time.Hour}, deep, "blocks nested deeper than 16 (templates.maxDepth)"},
		{"size", macros.RenderLimits{MaxTemplateBytes: 10, Timeout: time.Hour}, "Hello {{A}}, hello", "template is 18 bytes, more than 10 (templates.maxSize)"},
		{"steps", macros.RenderLimits{MaxSteps: 10, Timeout: time.Hour}, strings.Repeat("{{A}}", 11), "more than 10 steps (templates.maxSteps)"},
		{"time", macros.RenderLimits{Timeout: time.Nanosecond}, "{{#if A}}{{A}}{{/if}}", "took longer than 1ns (templates.renderTimeout)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := macros.NewBudget(tc.lim).Render(tc.tmpl, map[string]string{"A": "a"}, macros.Text, "")
			require.ErrorIs(t, err, macros.ErrRenderLimit)
			require.Contains(t, err.Error(), tc.reason)
		})
	}
	// The defaults render an ordinary template.
	out, err := macros.NewBudget(macros.RenderLimits{Timeout: time.Hour}).Render(strings.Repeat("{{#if A}}", 16)+"{{A}}"+strings.Repeat("{{/if}}", 16),
		map[string]string{"A": "a"}, macros.HTML, "")
	require.NoError(t, err)
	require.Equal(t, "a", out)
}

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{
		"Hi {{FNAME}}", "{{#each @root}}{{@key}}{{/each}}{{#each @root}}{{this}}{{/each}}",
		"{{#if A}}{{#unless B}}x{{else}}y{{/unless}}{{/if}}", `{{insert A "default=x"}}`, "",
	} {
		require.NoError(t, macros.Check(ok, macros.RenderLimits{}), "%q", ok)
	}
	cases := []struct{ tmpl, reason string }{
		{nestedEach(2, "x"), "{{#each}} inside another {{#each}}"},
		{"{{#each @root}}{{#if A}}{{#each ..}}{{/each}}{{/if}}{{/each}}", "{{#each}} inside another {{#each}}"},
		{strings.Repeat("{{#if A}}", 17) + strings.Repeat("{{/if}}", 17), "deeper than 16"},
		{"{{> header}}", "partial"},
		{"{{log FNAME}}", "{{log}}"},
		{"{{#if (log FNAME)}}x{{/if}}", "{{log}}"},
		{strings.Repeat("x", macros.DefaultMaxTemplateBytes+1), "more than 65536 (templates.maxSize)"},
	}
	for _, tc := range cases {
		err := macros.Check(tc.tmpl, macros.RenderLimits{})
		var le *macros.LimitError
		require.ErrorAs(t, err, &le, "%.60q", tc.tmpl)
		require.Equal(t, macros.WhatTemplate, le.What)
		require.Contains(t, le.Reason, tc.reason)
	}
	var te *macros.TemplateError
	require.ErrorAs(t, macros.Check("{{#if A}}unclosed", macros.RenderLimits{}), &te)
}

// TestLogHelperWritesNothing: {{log}} and the helpers that log a value
// they cannot convert must not put recipients' data in any log — neither
// raymond's own (logrus) nor the service's (slog).
func TestLogHelperWritesNothing(t *testing.T) {
	var lr, sl bytes.Buffer
	logrus.SetOutput(&lr)
	defer logrus.SetOutput(logrus.StandardLogger().Out)
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&sl, nil)))
	defer slog.SetDefault(prev)

	const secret = "s3cret-recipient-value"
	vars := map[string]string{"FNAME": secret, "N": "3"}
	for _, tmpl := range []string{
		"{{log FNAME}}", `{{log "x" FNAME}}`,
		"{{#ifGt FNAME 1}}a{{else}}b{{/ifGt}}", "{{#ifLt N FNAME}}a{{/ifLt}}", "{{#ifEq FNAME N}}a{{/ifEq}}",
		"{{#ifMatchesRegexStr FNAME N}}a{{/ifMatchesRegexStr}}", "{{#ifMatchesRegexStr \"(\" FNAME}}a{{/ifMatchesRegexStr}}",
	} {
		for _, mode := range []macros.Mode{macros.Text, macros.HTML} {
			out, err := macros.Render(tmpl, vars, mode, "")
			require.Empty(t, lr.String(), "raymond's logger, after %s", tmpl)
			require.Empty(t, sl.String(), "the service's logger, after %s", tmpl)
			require.NoError(t, err, tmpl)
			require.NotContains(t, out, secret, tmpl)
		}
	}
	require.False(t, errors.Is(macros.Check("{{FNAME}}", macros.RenderLimits{}), macros.ErrRenderLimit))
}
