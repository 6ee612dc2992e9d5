"""Reading a run dir: its run.json and its model (transformers, PEFT, frozen-encoder head) for inference.

The one place that knows how each artifact kind is loaded; prediction, export and serving build on it."""
from __future__ import annotations

from pathlib import Path

from finpeft.core.runinfo import read_run_info  # noqa: F401  (re-exported)


def load_model(model_dir: Path, info: dict):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    trc = info.get("trust_remote_code", False)
    from finpeft.models.scratch import register
    register()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trc)
    if info["artifact"] == "hf":
        return tokenizer, AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=trc)
    from finpeft.models.backbones import resolve_backbone
    if info["artifact"] == "frozen":
        from finpeft.methods.frozen import load_frozen_classifier
        # the encoder the head reads: one the method tuned (setfit: model/body), else the model.init_from run's
        # encoder, else the backbone as it is
        body = model_dir / "body"
        encoder = str(body) if body.is_dir() else str(Path(info["init_from"]) / "model") if info.get(
            "init_from") else resolve_backbone(info["backbone"])
        return tokenizer, load_frozen_classifier(model_dir, encoder, trc)
    from peft import PeftModel
    base_path = resolve_backbone(info["backbone"])
    labels = info["labels"]
    base = AutoModelForSequenceClassification.from_pretrained(
        base_path, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)}, trust_remote_code=trc)
    model = PeftModel.from_pretrained(base, model_dir)
    if info["method"] == "qlora" or model.active_peft_config.is_prompt_learning:
        return tokenizer, model  # 4/8-bit base weights, or soft prompts: nothing to fold in
    # LoRA / DoRA: fold the adapter into the base weights, so inference costs what a full fine-tune's does
    return tokenizer, model.merge_and_unload()
