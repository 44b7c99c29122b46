"""Model card template and rendering."""
