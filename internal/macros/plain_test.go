package macros

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/testalloc"
)

// viaRaymond renders t as if it were not plain: through raymond.
func viaRaymond(t *Template, b *Budget, vars map[string]string, missing string) (string, error) {
	c := *t
	c.plain = nil
	return c.ExecuteWithin(b, vars, missing)
}

// A plain template renders without raymond exactly as raymond renders it:
// the same output, the same error, the same budget spent, in both modes,
// under every missing-macro policy and within small limits.
func TestPlainTemplatesRenderAsRaymondDoes(t *testing.T) {
	t.Parallel()
	texts := []string{"Hi ", "<p>", "</p>", " & ", "'", `"`, "\n", "  ", "é😀", "x", "a}b", "{", "}"}
	macros := []string{"{{%s}}", "{{{%s}}}", "{{&%s}}", "{{ %s }}", "{{~%s~}}", "{{~{%s}~}}"}
	names := []string{"FNAME", "V", "ABSENT", "[two words]"}
	values := []string{"", "John", `<b>"a" & 'b'</b>`, strings.Repeat("v", 40)}
	rng := rand.New(rand.NewPCG(17, 42))
	plain := 0
	for i := range 20000 {
		var src strings.Builder
		for range 1 + rng.IntN(6) {
			if rng.IntN(2) == 0 {
				src.WriteString(texts[rng.IntN(len(texts))])
			} else {
				src.WriteString(fmt.Sprintf(macros[rng.IntN(len(macros))], names[rng.IntN(len(names))]))
			}
		}
		vars := map[string]string{}
		for _, n := range []string{"FNAME", "V", "two words"} {
			if rng.IntN(4) > 0 {
				vars[n] = values[rng.IntN(len(values))]
			}
		}
		mode := []Mode{Text, HTML}[rng.IntN(2)]
		missing := []string{MissingFail, MissingBlank, MissingKeep}[rng.IntN(3)]
		lim := RenderLimits{}
		if rng.IntN(2) == 0 {
			lim.MaxOutputBytes = 1 + rng.IntN(80)
		}
		if rng.IntN(4) == 0 {
			lim.MaxSteps = 1 + rng.IntN(3)
		}
		tpl, err := compile(src.String(), mode)
		if err != nil {
			continue // {{~{V}~}} and the like may not parse; raymond's affair
		}
		if tpl.plain == nil {
			continue
		}
		plain++
		fast, raym := NewBudget(lim), NewBudget(lim)
		// A field before, as a message's later fields see the budget.
		_, _ = fast.Render("Dear {{V}}", vars, mode, MissingBlank)
		_, _ = raym.Render("Dear {{V}}", vars, mode, MissingBlank)
		gotOut, gotErr := tpl.ExecuteWithin(fast, vars, missing)
		wantOut, wantErr := viaRaymond(tpl, raym, vars, missing)
		what := fmt.Sprintf("case %d: %q mode %v policy %q vars %q limits %+v", i, src.String(), mode, missing, vars, lim)
		require.Equal(t, wantOut, gotOut, what)
		require.Equal(t, fmt.Sprint(wantErr), fmt.Sprint(gotErr), what)
		require.Equal(t, raym.produced, fast.produced, what)
		require.Equal(t, raym.steps, fast.steps, what)
	}
	require.Greater(t, plain, 10000, "most generated templates are plain")
}

// Templates of literal text and macros take the plain path; anything else
// keeps raymond.
func TestPlainTemplatesSkipRaymond(t *testing.T) {
	t.Parallel()
	for src, plain := range map[string]bool{
		"Hi {{FNAME}}, welcome to {{{TEAM}}}": true,
		"{{&FNAME}}":                          true,
		"{{#if FNAME}}{{FNAME}}{{/if}}":       false,
		"{{FNAME.length}}":                    false,
		"{{this}}":                            false,
		"{{! note }}{{FNAME}}":                false,
		`{{insert FNAME "default=you"}}`:      false,
		"{{equals}}":                          false,
	} {
		tpl, err := compile(src, HTML)
		require.NoError(t, err, src)
		require.Equal(t, plain, tpl.plain != nil, src)
	}
}

// isHelper knows every helper a template registers: requiredRefs and
// plainPieces rely on it to tell a printed macro from a helper call.
func TestIsHelperKnowsEveryRegisteredHelper(t *testing.T) {
	t.Parallel()
	for name := range helpers() {
		require.True(t, isHelper(name), name)
	}
}

// The plain path is what makes a render cheap: it allocates the budget, the
// output and an escaped value, where raymond allocated its data frame,
// visitor and context map and a formatted string per value. make test runs
// it without the race detector, which allocates on its own account.
func TestPlainRenderAllocs(t *testing.T) {
	testalloc.SkipUnderRace(t)
	tpl, err := compile("<p>Hello {{FNAME}}, your code is {{CODE}}</p>", HTML)
	require.NoError(t, err)
	vars := map[string]string{"FNAME": "John", "CODE": "<1234>"}
	allocs := testing.AllocsPerRun(100, func() {
		out, err := tpl.ExecuteWithin(NewBudget(RenderLimits{}), vars, MissingFail)
		if err != nil || out != "<p>Hello John, your code is &lt;1234&gt;</p>" {
			t.Fatalf("%q %v", out, err)
		}
	})
	require.LessOrEqual(t, allocs, 5.0, "a plain render allocates its budget, its output and the escaped value")
}
