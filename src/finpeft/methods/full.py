"""Full fine-tuning: every parameter trains."""
from finpeft.methods.common import NoOptions as Options, load_classifier  # noqa: F401  (Options: the method protocol)

ARTIFACT = "hf"
ONNX = True  # exports, checked against torch in tests/test_export.py


def build(model_path, labels, opts, model_cfg):
    return load_classifier(model_path, labels, model_cfg)
