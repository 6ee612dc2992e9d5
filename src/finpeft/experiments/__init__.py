"""Stage 7, experiments over many runs: bench grids and leaderboards, tune (Optuna), ablate, published anchors."""
