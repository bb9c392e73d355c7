// Package macros substitutes a recipient's macros into templates written in
// the syntax SendGrid dynamic templates use: {{FNAME}}.
package macros

import (
	"fmt"
	"html"
	"regexp"
	"strings"
)

// Mode says how values are escaped.
type Mode int

// Modes.
const (
	Text Mode = iota // SMS, push, subjects: values as they are
	HTML             // HTML bodies: values HTML-escaped
)

// Missing-macro policies (the same strings as actions.MissingFail etc.).
const (
	MissingFail  = "fail"
	MissingBlank = "blank"
	MissingKeep  = "keep"
)

// MissingError names a macro the template uses and the recipient lacks.
type MissingError struct{ Name string }

func (e *MissingError) Error() string { return fmt.Sprintf("macros: missing macro %q", e.Name) }

var placeholder = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}`)

// Render substitutes vars into tmpl. missing is the policy for a placeholder
// with no value ("" means fail).
func Render(tmpl string, vars map[string]string, mode Mode, missing string) (string, error) {
	if !strings.Contains(tmpl, "{{") {
		return tmpl, nil
	}
	var firstMissing error
	out := placeholder.ReplaceAllStringFunc(tmpl, func(m string) string {
		name := placeholder.FindStringSubmatch(m)[1]
		v, ok := vars[name]
		if !ok {
			switch missing {
			case MissingBlank:
				return ""
			case MissingKeep:
				return m
			default:
				if firstMissing == nil {
					firstMissing = &MissingError{Name: name}
				}
				return m
			}
		}
		if mode == HTML {
			return html.EscapeString(v)
		}
		return v
	})
	if firstMissing != nil {
		return "", firstMissing
	}
	return out, nil
}
