package main

import (
	_ "embed"
	"encoding/json"
	"fmt"
)

// catalogJSON is the original product catalog, embedded so a fresh database anywhere (CI
// included) starts with the same ten products.
//
//go:embed seed/catalog.json
var catalogJSON []byte

// Catalog returns the embedded seed catalog.
func Catalog() ([]CatalogItem, error) {
	var items []CatalogItem
	if err := json.Unmarshal(catalogJSON, &items); err != nil {
		return nil, fmt.Errorf("embedded catalog: %w", err)
	}
	return items, nil
}
