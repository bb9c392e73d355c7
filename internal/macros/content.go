package macros

import (
	"sort"

	"github.com/notificationservice/notificationservice/internal/actions"
)

// FieldError is a render failure in one field of an action's content
// (subject, html, text, title, body, data.KEY).
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

// RenderContent renders every field of c with vars: HTML in HTML mode, the
// subject, text, title, body and data values in Text mode. missing is the
// action's missing-macro policy. The first failure is returned as a
// *FieldError wrapping the *MissingError or *TemplateError.
func RenderContent(c actions.Content, vars map[string]string, missing string) (actions.Content, error) {
	return shared.RenderContent(c, vars, missing)
}

// RenderContent is the package-level RenderContent on r's cache.
func (r *Renderer) RenderContent(c actions.Content, vars map[string]string, missing string) (actions.Content, error) {
	var out actions.Content
	fields := []struct {
		name string
		src  string
		mode Mode
		dst  *string
	}{
		{"subject", c.Subject, Text, &out.Subject},
		{"html", c.HTML, HTML, &out.HTML},
		{"text", c.Text, Text, &out.Text},
		{"title", c.Title, Text, &out.Title},
		{"body", c.Body, Text, &out.Body},
	}
	for _, f := range fields {
		s, err := r.Render(f.src, vars, f.mode, missing)
		if err != nil {
			return actions.Content{}, &FieldError{Field: f.name, Err: err}
		}
		*f.dst = s
	}
	if len(c.Data) > 0 {
		keys := make([]string, 0, len(c.Data))
		for k := range c.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out.Data = make(map[string]string, len(c.Data))
		for _, k := range keys {
			s, err := r.Render(c.Data[k], vars, Text, missing)
			if err != nil {
				return actions.Content{}, &FieldError{Field: "data." + k, Err: err}
			}
			out.Data[k] = s
		}
	}
	return out, nil
}

// RenderAction renders an action's content for a recipient: the locale
// variant chosen by cfg.ContentFor (fr_CA → fr → the default), under the
// action's missing-macro policy.
func RenderAction(cfg actions.Config, locale string, vars map[string]string) (actions.Content, error) {
	return shared.RenderContent(cfg.ContentFor(locale), vars, cfg.MissingMacro)
}
