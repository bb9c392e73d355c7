package dispatch

// Claims is how many claim statements d has run.
func (d *Dispatcher) Claims() int64 { return d.claims.Load() }
