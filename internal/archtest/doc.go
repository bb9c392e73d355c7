// Package archtest holds the architecture test: it loads the real import
// graph of the module with `go list` and fails, naming the offending chain of
// imports, when a package imports what docs/architecture.md forbids it (a
// domain package reaching Gin or AMQP, a channel reaching dispatch, a
// renderer reaching the channels, and the other rules listed there).
//
// The rules live in a test, not only in the document, because a layering
// rule that nothing checks is broken by the first hurried change, and the
// issues that follow (new channels, the rule engine, group commit) add code in
// exactly the packages these rules keep apart.
//
// The package has no code outside its tests; this file only names it.
package archtest
