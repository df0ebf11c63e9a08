"""Recipes as data, the stage registry, the stage runner and its cache."""
