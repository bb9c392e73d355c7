package store

import (
	"context"
	"fmt"

	"gorm.io/gorm"
)

// CollectionsWithRows reports which of cids have at least one row in
// table, a table whose first index column is collection_id (the caller's
// own constant, never input): one EXISTS per collection, each a probe of
// that index however many rows the collection holds. A batch almost always
// names one collection.
func CollectionsWithRows(ctx context.Context, db *gorm.DB, table string, cids []int64) (map[int64]bool, error) {
	has := make(map[int64]bool, len(cids))
	for _, c := range cids {
		var ok bool
		if err := db.WithContext(ctx).Raw("SELECT EXISTS (SELECT 1 FROM "+table+" WHERE collection_id = ?)", c).Scan(&ok).Error; err != nil {
			return nil, fmt.Errorf("%s of collection %d: %w", table, c, err)
		}
		has[c] = ok
	}
	return has, nil
}
