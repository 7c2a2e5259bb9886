"""Recipes that build shipped artifacts (the bundled default model)."""
