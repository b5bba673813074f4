"""Camera drivers (hardware cameras; the pattern camera needs none and lives in hiwm.nodes)."""
