package macros_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/macros"
)

func TestRender(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"FNAME": "<John & \"Jo\">", "CODE": "42", "EMPTY": "", "N": "7"}
	cases := []struct {
		name    string
		tmpl    string
		mode    macros.Mode
		missing string
		want    string
		missErr []string // names a *MissingError must carry
	}{
		{name: "no placeholders", tmpl: "plain <b>text</b>", mode: macros.HTML, want: "plain <b>text</b>"},
		{name: "text keeps values as they are", tmpl: "Hi {{FNAME}}!", mode: macros.Text, want: `Hi <John & "Jo">!`},
		{name: "html escapes values", tmpl: "<p>Hi {{FNAME}}</p>", mode: macros.HTML, want: "<p>Hi &lt;John &amp; &quot;Jo&quot;&gt;</p>"},
		{name: "html triple-stash does not escape", tmpl: "{{{FNAME}}}", mode: macros.HTML, want: `<John & "Jo">`},
		{name: "whitespace and strip marks", tmpl: "a {{~ CODE ~}} b {{ CODE }}", mode: macros.Text, want: "a42b 42"},
		{name: "text mode through a helper", tmpl: `{{insert NOPE "default=A & B"}}`, mode: macros.Text, want: "A & B"},
		{name: "html mode through a helper", tmpl: `{{insert NOPE "default=A & B"}}`, mode: macros.HTML, want: "A &amp; B"},
		{name: "insert takes the value", tmpl: `{{insert CODE "default=none"}}`, mode: macros.Text, want: "42"},
		{name: "empty value is present", tmpl: "[{{EMPTY}}]", mode: macros.Text, want: "[]"},

		{name: "fail names every missing macro", tmpl: "{{A}} {{CODE}} {{B}} {{A}}", mode: macros.Text, missErr: []string{"A", "B"}},
		{name: "fail is the default", tmpl: "{{A}}", mode: macros.Text, missing: "", missErr: []string{"A"}},
		{name: "blank", tmpl: "x{{A}}y{{CODE}}", mode: macros.Text, missing: macros.MissingBlank, want: "xy42"},
		{name: "keep", tmpl: "x{{A}}y{{ B }}", mode: macros.HTML, missing: macros.MissingKeep, want: "x{{A}}y{{B}}"},

		{name: "if guards its macro", tmpl: "{{#if NICK}}Hi {{NICK}}{{else}}Hello{{/if}}", mode: macros.Text, want: "Hello"},
		{name: "if does not guard another macro", tmpl: "{{#if CODE}}{{NICK}}{{/if}}", mode: macros.Text, missErr: []string{"NICK"}},
		{name: "unless guards its else", tmpl: "{{#unless NICK}}anon{{else}}{{NICK}}{{/unless}}", mode: macros.Text, want: "anon"},
		{name: "macro used only as helper param is not required", tmpl: "{{#equals PLAN \"pro\"}}pro{{else}}free{{/equals}}", mode: macros.Text, want: "free"},

		{name: "equals", tmpl: `{{#equals CODE "42"}}yes{{else}}no{{/equals}}`, mode: macros.Text, want: "yes"},
		{name: "notEquals", tmpl: `{{#notEquals CODE "42"}}yes{{else}}no{{/notEquals}}`, mode: macros.Text, want: "no"},
		{name: "greaterThan", tmpl: `{{#greaterThan N 5}}big{{else}}small{{/greaterThan}}`, mode: macros.Text, want: "big"},
		{name: "lessThan not a number", tmpl: `{{#lessThan FNAME 5}}y{{else}}n{{/lessThan}}`, mode: macros.Text, want: "n"},
		{name: "and", tmpl: `{{#and CODE EMPTY}}y{{else}}n{{/and}}`, mode: macros.Text, want: "n"},
		{name: "or", tmpl: `{{#or CODE EMPTY}}y{{else}}n{{/or}}`, mode: macros.Text, want: "y"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := macros.Render(tc.tmpl, vars, tc.mode, tc.missing)
			if tc.missErr != nil {
				var me *macros.MissingError
				require.ErrorAs(t, err, &me)
				require.Equal(t, tc.missErr, me.Names)
				require.Equal(t, tc.missErr[0], me.Name)
				require.True(t, macros.IsPermanent(err))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestRenderBadTemplate(t *testing.T) {
	t.Parallel()
	for _, tmpl := range []string{"{{#if A}}unclosed", "{{/if}}", "{{", "{{#each}}{{/if}}"} {
		_, err := macros.Render(tmpl, nil, macros.Text, macros.MissingBlank)
		var te *macros.TemplateError
		require.ErrorAs(t, err, &te, "template %q", tmpl)
		require.True(t, macros.IsPermanent(err))
	}
}

func TestTemplateMacros(t *testing.T) {
	t.Parallel()
	r := macros.New(8)
	tpl, err := r.Compile("{{B}} {{#if C}}{{C}}{{/if}} {{A}} {{B}} {{#each L}}{{X}}{{/each}} {{insert D \"default=x\"}} {{@index}} {{this}}", macros.Text)
	require.NoError(t, err)
	require.Equal(t, []string{"B", "A"}, tpl.Macros())
}

func TestRendererCache(t *testing.T) {
	t.Parallel()
	r := macros.New(2)
	a, err := r.Compile("{{A}}", macros.Text)
	require.NoError(t, err)
	again, err := r.Compile("{{A}}", macros.Text)
	require.NoError(t, err)
	require.Same(t, a, again, "a cached template is compiled once")

	html, err := r.Compile("{{A}}", macros.HTML)
	require.NoError(t, err)
	require.NotSame(t, a, html, "the mode is part of the key")
	require.Equal(t, 2, r.Len())

	_, err = r.Compile("{{B}}", macros.Text) // evicts the least recently used: {{A}} text
	require.NoError(t, err)
	require.Equal(t, 2, r.Len())
	evicted, err := r.Compile("{{A}}", macros.Text)
	require.NoError(t, err)
	require.NotSame(t, a, evicted)

	_, err1 := r.Compile("{{#if}}", macros.Text)
	_, err2 := r.Compile("{{#if}}", macros.Text)
	require.Error(t, err1)
	require.Same(t, err1, err2, "a failure is cached too")
}

// TestRenderConcurrent shares one compiled template between goroutines (run
// with -race).
func TestRenderConcurrent(t *testing.T) {
	t.Parallel()
	r := macros.New(4)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := fmt.Sprintf("<b>Hi &lt;%d&gt;</b>", i)
			got, err := r.Render("<b>Hi {{N}}</b>", map[string]string{"N": fmt.Sprintf("<%d>", i)}, macros.HTML, "")
			if err == nil && got != want {
				err = fmt.Errorf("got %q, want %q", got, want)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, 1, r.Len())
}

func TestIsPermanent(t *testing.T) {
	t.Parallel()
	require.False(t, macros.IsPermanent(errors.New("other")))
	require.True(t, macros.IsPermanent(&macros.FieldError{Field: "html", Err: &macros.MissingError{Name: "A"}}))
	_, err := macros.CheckSMS("", 10)
	require.True(t, macros.IsPermanent(err))
}
