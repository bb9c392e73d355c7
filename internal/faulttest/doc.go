// Package faulttest holds the process-level fault suite (docs/runbook.md,
// "Fault suite"): it builds cmd/notificationservice, starts a private
// PostgreSQL cluster and a private RabbitMQ node on ports of its own, and
// crashes, stops and fills them under load while the binary runs, then
// counts what was lost, duplicated, dead-lettered, stuck or in doubt.
//
// The package has no code outside its tests; this file only names it.
package faulttest
