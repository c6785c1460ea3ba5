"""Named search spaces as plain, validated data (no Ray import)."""
