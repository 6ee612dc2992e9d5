"""Recurrent baselines over frozen token states: a BiLSTM head and a CNN-LSTM head.
Shapes: tokens (B, L, H), mask (B, L); representation (B, R) feeds a dropout + Linear classifier."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


def _final_states(lstm: nn.LSTM, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Last hidden state of each direction at each row's true length (padding never enters): (B, dirs * h)."""
    lengths = mask.sum(1).clamp(min=1).cpu()
    _, (h, _) = lstm(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    return torch.cat(list(h[-(2 if lstm.bidirectional else 1):]), -1)


class BiLSTMHead(nn.Module):
    inputs = "tokens"

    def __init__(self, hidden: int, n_labels: int, opts):
        super().__init__()
        self.lstm = nn.LSTM(hidden, opts.lstm_hidden, num_layers=opts.lstm_layers, batch_first=True,
                            bidirectional=True, dropout=opts.dropout if opts.lstm_layers > 1 else 0.0)
        self.dropout = nn.Dropout(opts.dropout)
        self.classifier = nn.Linear(2 * opts.lstm_hidden, n_labels)

    def forward(self, cls, tokens=None, mask=None) -> dict:
        rep = _final_states(self.lstm, tokens, mask)
        return {"logits": self.classifier(self.dropout(rep)), "representation": rep}


class CNNLSTMHead(nn.Module):
    """Conv1d n-gram features (kernel k, same padding) -> ReLU -> LSTM -> last state."""
    inputs = "tokens"

    def __init__(self, hidden: int, n_labels: int, opts):
        super().__init__()
        self.conv = nn.Conv1d(hidden, opts.channels, opts.kernel_size, padding=opts.kernel_size // 2)
        self.lstm = nn.LSTM(opts.channels, opts.lstm_hidden, batch_first=True, bidirectional=opts.bidirectional)
        self.dropout = nn.Dropout(opts.dropout)
        self.classifier = nn.Linear(opts.lstm_hidden * (2 if opts.bidirectional else 1), n_labels)

    def forward(self, cls, tokens=None, mask=None) -> dict:
        x = tokens * mask.unsqueeze(-1).to(tokens.dtype)  # zero padding before the convolution sees it
        x = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)[:, :tokens.shape[1]]
        rep = _final_states(self.lstm, self.dropout(x), mask)
        return {"logits": self.classifier(self.dropout(rep)), "representation": rep}
