"""Hand-written heads that sit on a frozen encoder's states: Mamba2 / attention adapter stacks with gated
fusion, the gamba expert ensemble, BiLSTM and CNN-LSTM heads. No maintained library ships these (peft
adapts weights inside the backbone; these read its outputs), so they live here, one concept a file."""
