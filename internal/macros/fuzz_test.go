package macros_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/notificationservice/notificationservice/internal/macros"
)

// htmlEscape is the escaping HTML mode promises for {{X}}.
var htmlEscape = strings.NewReplacer("&", "&amp;", "'", "&apos;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")

// FuzzRender feeds admin-style templates and recipient values to the
// renderer. It must never panic, and: a value printed by {{V}} is escaped in
// HTML mode and untouched in text mode; without HTML-special characters
// anywhere, text and HTML mode agree (the text-mode rewrite changes escaping
// only); the fail policy names only macros that are really absent; blank
// succeeds wherever fail does, with the same output; every render within
// small RenderLimits fits them or stops with a render limit; and a template
// Check accepts never goes deeper at render than the depth Check allowed.
//
// CI runs it for a bounded time: make fuzz (FUZZTIME=30s by default).
func FuzzRender(f *testing.F) {
	for _, seed := range []struct{ tmpl, value string }{
		{"Hi {{FNAME}}", "John"},
		{"<p>{{V}}</p>{{{V}}}", `<script>"x" & 'y'</script>`},
		{"{{#if V}}{{V}}{{else}}none{{/if}}", ""},
		{"{{#each L}}{{this}}{{/each}}", "x"},
		{`{{#equals V "1"}}one{{/equals}} {{insert N "default=n/a"}}`, "1"},
		{"{{~ V ~}} {{& V}} {{! comment }} {{@index}}", "v"},
		{"{{", "x"},
		{"{{#if}}{{/unless}}", "x"},
		{"{{> partial}}", "x"},
		{"Привет {{V}} 😀", "мир"},
		{"{{#each @root}}{{#each @root}}{{#each ..}}{{this}}{{/each}}{{/each}}{{/each}}", "x"},
		{"{{log V}}{{#ifGt V 1}}a{{/ifGt}}{{lookup @root \"V\"}}", "2"},
		{"{{#if V}}{{#if V}}{{#if V}}{{#if V}}{{#if V}}{{V}}{{/if}}{{/if}}{{/if}}{{/if}}{{/if}}", "deep"},
	} {
		f.Add(seed.tmpl, seed.value)
	}
	f.Fuzz(func(t *testing.T, tmpl, value string) {
		vars := map[string]string{"V": value, "FNAME": value}

		// Never panic, whatever the template, mode and policy.
		var failOut string
		var failErr error
		for _, mode := range []macros.Mode{macros.Text, macros.HTML} {
			for _, policy := range []string{macros.MissingFail, macros.MissingBlank, macros.MissingKeep} {
				out, err := macros.Render(tmpl, vars, mode, policy)
				if mode == macros.HTML && policy == macros.MissingFail {
					failOut, failErr = out, err
				}
				var me *macros.MissingError
				if errors.As(err, &me) {
					if policy != macros.MissingFail {
						t.Fatalf("policy %q returned a missing-macro error: %v", policy, err)
					}
					for _, n := range me.Names {
						if _, ok := vars[n]; ok {
							t.Fatalf("%q reported missing but present", n)
						}
					}
				}
			}
		}
		if failErr == nil {
			blank, err := macros.Render(tmpl, vars, macros.HTML, macros.MissingBlank)
			if err != nil || blank != failOut {
				t.Fatalf("blank (%q, %v) differs from fail (%q)", blank, err, failOut)
			}
		}

		// Every render is bounded.
		lim := macros.RenderLimits{MaxOutputBytes: 2048, MaxSteps: 500, MaxDepth: 4, Timeout: time.Minute}
		out, err := macros.NewBudget(lim).Render(tmpl, vars, macros.HTML, macros.MissingBlank)
		var le *macros.LimitError
		switch {
		case err == nil && len(out) > lim.MaxOutputBytes:
			t.Fatalf("%d bytes of output, over the limit of %d", len(out), lim.MaxOutputBytes)
		case errors.Is(err, macros.ErrRenderLimit) && (!errors.As(err, &le) || le.What != macros.WhatRender):
			t.Fatalf("a render limit that is not a render LimitError: %v", err)
		case errors.As(err, &le) && strings.Contains(le.Reason, "templates.maxDepth") && macros.Check(tmpl, lim) == nil:
			t.Fatalf("Check accepted %q but the render went deeper than %d", tmpl, lim.MaxDepth)
		}

		// Escaping of a printed value.
		got, err := macros.Render("<{{V}}>", vars, macros.HTML, "")
		if err != nil || got != "<"+htmlEscape.Replace(value)+">" {
			t.Fatalf("html {{V}} of %q = %q, %v", value, got, err)
		}
		got, err = macros.Render("<{{V}}>", vars, macros.Text, "")
		if err != nil || got != "<"+value+">" {
			t.Fatalf("text {{V}} of %q = %q, %v", value, got, err)
		}

		// Text and HTML agree when nothing needs escaping.
		if !strings.ContainsAny(tmpl+value, `&'<>"`) {
			text, errT := macros.Render(tmpl, vars, macros.Text, macros.MissingBlank)
			html, errH := macros.Render(tmpl, vars, macros.HTML, macros.MissingBlank)
			if (errT == nil) != (errH == nil) || text != html {
				t.Fatalf("text (%q, %v) and html (%q, %v) disagree on %q", text, errT, html, errH, tmpl)
			}
		}
	})
}
