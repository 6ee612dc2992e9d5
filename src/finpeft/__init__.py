"""finpeft: fine-tune, evaluate, compare and serve financial-text models with parameter-efficient methods.

The Python API (finpeft.api; every CLI command calls one of these):

    import finpeft
    run = finpeft.train("recipes/fpb.yaml", ["method=lora"])
    finpeft.load(run).predict(["Operating profit rose to EUR 13.1 mn"])
"""
from finpeft.api import (ablate, bench, catalog, check_data, ensemble, evaluate, export, label_curve, label_issues,
                         label_merge, label_suggest, llm_compare, llm_evaluate, llm_merge, llm_predict, llm_train,
                         load, predict_archive, predict_file, pretrain, results, serve, summarise, train, tune)
from finpeft.version import __version__

__all__ = ["__version__", "train", "load", "evaluate", "summarise", "predict_file", "predict_archive", "check_data", "catalog", "pretrain", "export",
           "serve", "ensemble", "bench", "tune", "ablate", "llm_train", "llm_evaluate", "llm_predict", "llm_compare",
           "llm_merge", "label_suggest", "label_merge", "label_curve", "label_issues", "results"]
