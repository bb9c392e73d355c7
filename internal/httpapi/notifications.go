package httpapi

// NotificationService is what the notifications routes need. Placeholder until its issue lands.
type NotificationService interface{}

func (r *router) notifications() {}
