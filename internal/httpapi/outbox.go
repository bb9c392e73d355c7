package httpapi

// OutboxService is what the outbox routes need. Placeholder until its issue lands.
type OutboxService interface{}

func (r *router) outbox() {}
