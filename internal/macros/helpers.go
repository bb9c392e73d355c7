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
// globally) so no package state changes. branch runs a block's body or its
// {{else}} within the render's budget.
func sendGridHelpers(branch func(*raymond.Options, bool) any) map[string]any {
	return map[string]any{
		// {{#equals A B}}yes{{else}}no{{/equals}}: string comparison.
		"equals": func(x, y any, o *raymond.Options) any {
			return branch(o, str(x) == str(y))
		},
		"notEquals": func(x, y any, o *raymond.Options) any {
			return branch(o, str(x) != str(y))
		},
		"and": func(x, y any, o *raymond.Options) any {
			return branch(o, truthy(x) && truthy(y))
		},
		"or": func(x, y any, o *raymond.Options) any {
			return branch(o, truthy(x) || truthy(y))
		},
		// Numeric comparisons; a value that is not a number is false.
		"greaterThan": func(x, y any, o *raymond.Options) any {
			n, m, ok := numbers(x, y)
			return branch(o, ok && n > m)
		},
		"lessThan": func(x, y any, o *raymond.Options) any {
			n, m, ok := numbers(x, y)
			return branch(o, ok && n < m)
		},
		// {{insert NAME "default=Customer"}}: NAME, or the default when NAME
		// is absent or empty. The result is escaped like any {{...}} output.
		"insert": func(v any, def string, o *raymond.Options) any {
			b := budgetOf(o)
			b.step()
			if s := str(v); s != "" {
				return b.emit(s)
			}
			return b.emit(strings.TrimPrefix(def, "default="))
		},
	}
}

func numbers(a, b any) (float64, float64, bool) {
	x, err1 := strconv.ParseFloat(strings.TrimSpace(str(a)), 64)
	y, err2 := strconv.ParseFloat(strings.TrimSpace(str(b)), 64)
	return x, y, err1 == nil && err2 == nil
}
