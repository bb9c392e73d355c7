package store

import (
	"encoding/json"
	"fmt"
)

// ScanJSON decodes a JSON TEXT column value (string or []byte, as the
// SQLite and PostgreSQL drivers return it) into dst. NULL and an empty value
// leave dst as it is, so a Scan method that wants a reset zeroes dst first.
func ScanJSON(src, dst any) error {
	var b []byte
	switch v := src.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	case nil:
		return nil
	default:
		return fmt.Errorf("store: cannot scan %T as JSON into %T", src, dst)
	}
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, dst)
}
