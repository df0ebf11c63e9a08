"""What `invoke benchmark` and `invoke benchmark-byo` measure: recipes side by side, examples."""
