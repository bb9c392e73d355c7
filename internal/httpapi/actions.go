package httpapi

// ActionService is what the actions routes need. Placeholder until its issue lands.
type ActionService interface{}

func (r *router) actions() {}
