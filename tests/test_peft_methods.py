"""IA3 and prompt tuning: each one module + one registry line, trained on real FPB rows through the same
pipeline as every method (train -> run dir -> load -> predict)."""
import json

import numpy as np
import pytest

from conftest import TINY


@pytest.mark.parametrize("method, extra, max_share", [
    ("ia3", [], 0.02),                                       # scaling vectors + the classifier
    ("prompt-tuning", ["method.num_virtual_tokens=8"], 0.02),  # 8 soft-prompt vectors + the classifier
])
def test_method_trains_saves_and_reloads(method, extra, max_share, tmp_path):
    from finpeft import load, train
    out = train(None, TINY + ["data=fpb-allagree", "data.max_train_samples=192", "train.epochs=2",
                              f"method={method}", *extra], output=tmp_path / method)
    m = json.loads((out / "metrics.json").read_text())
    assert 0 < m["trainable_params"] / m["total_params"] < max_share
    assert json.loads((out / "run.json").read_text())["artifact"] == "peft"
    assert (out / "model" / "adapter_config.json").is_file()
    texts = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.", "Net sales fell by 20 %."]
    p = load(out).predict_proba(texts)
    assert p.shape == (2, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    # the reloaded model scores the test split exactly as the trained one did
    from finpeft.inference.evaluate import evaluate_run
    from finpeft.core.recipe import load_recipe
    _, again = evaluate_run(out, load_recipe(out / "recipe.yaml").data)
    assert again["accuracy"] == pytest.approx(m["accuracy"], abs=1e-9)


def test_ia3_is_merged_for_inference_and_prompt_tuning_is_not(tmp_path):
    from finpeft import load, train
    ia3 = train(None, TINY + ["method=ia3", "train.max_steps=2"], output=tmp_path / "ia3")
    pt = train(None, TINY + ["method=prompt-tuning", "method.num_virtual_tokens=4", "train.max_steps=2"],
               output=tmp_path / "pt")
    assert not any("ia3_" in n for n, _ in load(ia3).model.named_parameters())
    assert hasattr(load(pt).model, "peft_config")
