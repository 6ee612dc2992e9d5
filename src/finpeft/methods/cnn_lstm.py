"""cnn-lstm: Conv1d n-gram features over the frozen token states, then an LSTM (a classic baseline)."""
from pydantic import Field

from finpeft.methods.frozen import ARTIFACT, TRAIN_DEFAULTS, FrozenOptions  # noqa: F401

ONNX = False  # packed LSTM sequences have no ONNX form in torch's exporter


class Options(FrozenOptions):
    channels: int = Field(128, ge=1)
    kernel_size: int = Field(3, ge=1)
    lstm_hidden: int = Field(128, ge=1)
    bidirectional: bool = False


def build_head(hidden: int, n_labels: int, opts):
    from finpeft.models.adapters.recurrent import CNNLSTMHead
    return CNNLSTMHead(hidden, n_labels, opts)
