// Package benchbin holds the benchmark that runs the built binary
// (docs/benchmarks.md, "The built binary"): it builds cmd/notificationservice
// as `make build` does, starts it with its default configuration against a
// fresh database on the local PostgreSQL and queues of its own on the local
// RabbitMQ, and measures what users run — the queue drain, enqueue→sent
// latency, the REST send, a cached admin GET, RSS and the binary's size —
// next to bare amqp091-go and Gin baselines measured in the same run.
//
// The package has no code outside its tests; this file only names it.
package benchbin
