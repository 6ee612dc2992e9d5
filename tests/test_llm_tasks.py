"""LLM tasks without a model: file tasks split without leakage, mixing arithmetic, free-text metrics."""
import pytest

from finpeft.errors import FinpeftError
from finpeft.llm.data import task_splits
from finpeft.llm.mixing import Mixing, mixture_counts
from finpeft.llm.tasks import builtin_tasks, load_task
from finpeft.llm.text_metrics import exact_match, rouge, token_f1


def test_every_builtin_task_loads_and_renders_a_row(data_dir):
    assert {"fpb", "tfns", "fiqa-sa", "headline", "ner", "xbrl-term", "ectsum", "financebench"} <= set(builtin_tasks())
    for name in ("headline", "ner", "xbrl-term", "ectsum", "financebench"):
        task = load_task(name)
        s = task_splits(task)
        assert len(s.train) and len(s.test)
        row = s.test.iloc[0].to_dict()
        msg = task.user_message(row)
        shown = row["sentence"] if name == "ner" else row[task.text_column]
        assert shown[:100] in msg and task.answer(row)


def test_headline_questions_expand_and_stay_with_their_headline(data_dir):
    task = load_task("headline")
    s = task_splits(task)
    assert len(s.train) + len(s.test) == 6 * 10570
    assert s.train.groupby("text").size().eq(6).all()  # all six questions of a headline on one side
    assert not set(s.train["text"]) & set(s.test["text"])
    row = s.test[s.test["question_column"] == "price_direction_down"].iloc[0].to_dict()
    assert "Question: Does the news headline talk about price going down?" in task.user_message(row)
    assert task.answer(row) in ("Yes", "No")


def test_ner_items_are_deduplicated_and_split_by_sentence(data_dir):
    s = task_splits(load_task("ner"))
    assert len(s.train) + len(s.test) == 98  # SOURCE.md: 98 distinct (sentence, entity) items
    assert not set(s.train["sentence"]) & set(s.test["sentence"])
    assert any("duplicate rows dropped" in n for n in s.notes)


def test_truncate_keeps_long_inputs_in_budget(data_dir):
    task = load_task("ectsum")
    row = task_splits(task).test.iloc[0].to_dict()
    assert len(row["text"]) > 6000 and len(task.user_message(row)) < 6000 + 300


def test_file_tasks_need_the_datasets_folder(monkeypatch):
    monkeypatch.delenv("FINPEFT_DATA_DIR", raising=False)
    with pytest.raises(FinpeftError, match="set FINPEFT_DATA_DIR"):
        task_splits(load_task("xbrl-term"))


def test_bad_task_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("name: x\ninstruction: hi\nanswer_column: label\n")  # neither dataset nor files
    with pytest.raises(FinpeftError, match="either dataset"):
        load_task(str(bad))
    bad.write_text("name: x\ndataset: fpb\nchoices: {a: A, b: A}\n")
    with pytest.raises(FinpeftError, match="share a verbaliser"):
        load_task(str(bad))


def test_mixture_counts():
    sizes = {"fpb": 3634, "tfns": 9543, "fiqa-sa": 915}
    assert mixture_counts(sizes, Mixing()) == sizes  # proportional = plain concatenation
    bal = mixture_counts(sizes, Mixing(strategy="balanced"))
    assert sum(bal.values()) == sum(sizes.values()) and max(bal.values()) - min(bal.values()) <= 1
    w = mixture_counts(sizes, Mixing(strategy="weighted", weights={"fpb": 2}, size=1000))
    assert w == {"fpb": 500, "tfns": 250, "fiqa-sa": 250}
    t = mixture_counts(sizes, Mixing(strategy="temperature", temperature=2))
    # T=2: shares follow sqrt(n) -- flatter than proportional, not flat
    assert sizes["fiqa-sa"] < t["fiqa-sa"] < bal["fiqa-sa"] and bal["tfns"] < t["tfns"] < sizes["tfns"]
    assert t["tfns"] / t["fpb"] == pytest.approx((9543 / 3634) ** 0.5, rel=1e-3)
    with pytest.raises(ValueError):
        Mixing(strategy="weighted", weights={"fpb": 0})


def test_exact_match_and_token_f1_follow_squad():
    assert exact_match("The $1,577.00.", "$1577.00") == 1.0  # punctuation and articles are dropped
    assert exact_match("$1577 million", "$1577.00") == 0.0
    assert exact_match("  The Yes.", "yes") == 1.0
    assert token_f1("revenue rose 5 percent", "revenue rose 5 percent in 2021") == pytest.approx(2 * 1 * 4 / 6 / (1 + 4 / 6))
    assert token_f1("nothing alike", "revenue rose") == 0.0


def test_rouge_identical_and_disjoint():
    r = rouge(["q1 eps $1.01.\nrevenue up 5%."], ["q1 eps $1.01.\nrevenue up 5%."])
    assert all(v == pytest.approx(1.0) for v in r.values())
    assert rouge(["gold"], ["bond yields"])["rouge1"] == 0.0


def test_long_prompts_are_cut_in_the_middle_keeping_instruction_and_answer_turn():
    from finpeft.llm.tasks import fit_prompt
    ids = list(range(1000))
    cut = fit_prompt(ids, 100)
    assert len(cut) == 100 and cut[:75] == ids[:75] and cut[-25:] == ids[-25:]
    assert fit_prompt(ids[:50], 100) == ids[:50]


def test_headline_test_rows_are_shuffled_so_a_cap_sees_every_question(data_dir):
    s = task_splits(load_task("headline"))
    assert s.test["question_column"].iloc[:60].nunique() == 6


def test_shots_cycle_labels_and_skip_exhausted_ones(data_dir):
    from finpeft.llm.train import pick_shots
    task = load_task("ner")
    train = task_splits(task).train
    shots = pick_shots(train, task, 20, seed=1)
    assert len(shots) == 20 and len({(r["sentence"], r["entity"]) for r in shots}) == 20
    assert [r["label"] for r in shots[:3]] == ["location", "organization", "person"]
    with pytest.raises(FinpeftError, match="shots asked"):
        pick_shots(train, task, len(train) + 1, seed=1)


def test_regression_task_parses_numbers_and_counts_unparseable_answers(data_dir):
    from finpeft.llm.text_metrics import number_metrics, parse_number
    assert [parse_number(t) for t in ("-0.35", "Score: 0.4.", "\u2212.2", "+1", "none")] == [-0.35, 0.4, -0.2, 1.0, None]
    m = number_metrics(["0.5", "about -0.4", "no idea", "0.1"], ["0.6", "-0.5", "0.3", "0.0"])
    assert m["unparseable"] == 1 and m["unparseable_rate"] == 0.25
    assert m["mse"] == pytest.approx((0.01 + 0.01 + 0.01) / 3)  # the three answers with a number
    assert m["mse_all"] == pytest.approx((0.01 + 0.01 + 0.09 + 0.01) / 4)  # no number scored as 0
    task = load_task("fiqa-score")
    s = task_splits(task)
    assert len(s.train) + len(s.test) == 1173 and not set(s.train["text"]) & set(s.test["text"])
    row = s.test.iloc[0].to_dict()
    assert row["target"] in task.user_message(row) and float(task.answer(row)) == pytest.approx(float(row["score"]))
