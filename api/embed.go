// Package api holds the API contracts: the OpenAPI document for the REST API
// (served at /openapi.yaml) and, beside it in docs/, the AsyncAPI document.
package api

import _ "embed"

// OpenAPI is openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
