// Package migrations holds the versioned SQL schema, one goose directory per
// SQL dialect. Both directories carry the same versions with the same meaning.
package migrations

import "embed"

// FS holds postgres/*.sql and sqlite/*.sql.
//
//go:embed postgres/*.sql sqlite/*.sql
var FS embed.FS
