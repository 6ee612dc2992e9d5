"""What every stage shares: the recipe schema and its loader (recipe.py), run dirs and results.csv (runs.py)."""
