package macros

import (
	"strconv"
	"strings"

	"github.com/mailgun/raymond/v2"
)

// sendGridHelperNames are the SendGrid dynamic-template helpers rendered
// locally too, so an inline template behaves as it would at SendGrid. See
// https://www.twilio.com/docs/sendgrid/for-developers/sending-email/using-handlebars.
// formatDate is not among them (SendGrid's date tokens are not reproduced
// here); raymond renders an unknown helper as "".
var sendGridHelperNames = map[string]struct{}{
	"equals": {}, "notEquals": {}, "and": {}, "or": {}, "greaterThan": {}, "lessThan": {}, "insert": {},
}

// sendGridHelpers returns the helper functions, registered per template (not
// globally) so no package state changes.
func sendGridHelpers() map[string]any {
	return map[string]any{
		// {{#equals A B}}yes{{else}}no{{/equals}}: string comparison.
		"equals": func(a, b any, o *raymond.Options) any {
			return branch(o, raymond.Str(a) == raymond.Str(b))
		},
		"notEquals": func(a, b any, o *raymond.Options) any {
			return branch(o, raymond.Str(a) != raymond.Str(b))
		},
		"and": func(a, b any, o *raymond.Options) any {
			return branch(o, raymond.IsTrue(a) && raymond.IsTrue(b))
		},
		"or": func(a, b any, o *raymond.Options) any {
			return branch(o, raymond.IsTrue(a) || raymond.IsTrue(b))
		},
		// Numeric comparisons; a value that is not a number is false.
		"greaterThan": func(a, b any, o *raymond.Options) any {
			x, y, ok := numbers(a, b)
			return branch(o, ok && x > y)
		},
		"lessThan": func(a, b any, o *raymond.Options) any {
			x, y, ok := numbers(a, b)
			return branch(o, ok && x < y)
		},
		// {{insert NAME "default=Customer"}}: NAME, or the default when NAME
		// is absent or empty. The result is escaped like any {{...}} output.
		"insert": func(v any, def string) any {
			if s := raymond.Str(v); s != "" {
				return s
			}
			return strings.TrimPrefix(def, "default=")
		},
	}
}

func branch(o *raymond.Options, cond bool) string {
	if cond {
		return o.Fn()
	}
	return o.Inverse()
}

func numbers(a, b any) (float64, float64, bool) {
	x, err1 := strconv.ParseFloat(strings.TrimSpace(raymond.Str(a)), 64)
	y, err2 := strconv.ParseFloat(strings.TrimSpace(raymond.Str(b)), 64)
	return x, y, err1 == nil && err2 == nil
}
