"""finpeft: fine-tune, evaluate and serve financial-text classifiers with parameter-efficient methods."""
from .version import __version__


def load(run_dir):
    """Load a saved run for prediction: `finpeft.load("runs/x").predict(["Profit rose 5%"])`."""
    from .predict import Predictor
    return Predictor(run_dir)


def train(recipe=None, overrides=None, output=None, **kwargs):
    """Train from a recipe path (or a Recipe) plus `key=value` overrides; returns the run dir."""
    from .recipe import Recipe, load_recipe
    from .training import train as _train
    r = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, overrides or [])
    return _train(r, output=output, **kwargs)


__all__ = ["__version__", "load", "train"]
