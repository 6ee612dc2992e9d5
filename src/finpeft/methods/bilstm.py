"""bilstm: a bidirectional LSTM head over the frozen encoder's token states (a classic baseline)."""
from pydantic import Field

from finpeft.methods.frozen import ARTIFACT, TRAIN_DEFAULTS, FrozenOptions  # noqa: F401

ONNX = False  # packed LSTM sequences have no ONNX form in torch's exporter


class Options(FrozenOptions):
    lstm_hidden: int = Field(128, ge=1)
    lstm_layers: int = Field(1, ge=1)


def build_head(hidden: int, n_labels: int, opts):
    from finpeft.models.adapters.recurrent import BiLSTMHead
    return BiLSTMHead(hidden, n_labels, opts)
