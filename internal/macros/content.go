package macros

// FieldError is a render failure in one field of an action's content
// (subject, html, text, title, body, data.KEY).
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }
