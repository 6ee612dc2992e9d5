"""Stage 6, inference: load a run (artifacts.py, predictor.py), ONNX export and runtime, ensembles, evaluation on
any data, and the HTTP server (serve/, web/)."""
