"""Stage 5, reports: metrics and the report.md / plots of a run (classification.py, regression.py)."""
