"""``headbake eval``: paired A/B accuracy of a bake against the original model."""
