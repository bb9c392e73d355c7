package httpapi

// CollectionService is what the collections routes need. Placeholder until its issue lands.
type CollectionService interface{}

func (r *router) collections() {}
