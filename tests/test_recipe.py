import pytest

from finpeft.errors import FinpeftError
from finpeft.core.recipe import load_recipe


def test_defaults_are_minilm_fpb_full():
    r = load_recipe()
    assert (r.data.dataset, r.model.backbone, r.method.name) == ("fpb", "minilm-l6", "full")


def test_repo_recipe_matches_defaults():
    from conftest import ROOT
    assert load_recipe(ROOT / "recipes" / "fpb.yaml").model_dump(exclude={"name"}) == \
        load_recipe().model_dump(exclude={"name"})


def test_overrides_and_shorthands():
    r = load_recipe(None, ["method=lora", "method.r=4", "train.epochs=3", "data.label_map={0: negative}",
                           "train.report_to=[]"])
    assert r.method.name == "lora" and r.method.r == 4 and r.train.epochs == 3
    assert r.data.label_map == {"0": "negative"} and r.train.report_to == []


@pytest.mark.parametrize("override,message", [
    ("train.epoch=3", "unknown key 'train.epoch'"),
    ("train.lr=-1", "train.lr"),
    ("train.precision=fp8", "train.precision"),
    ("novalue", "not key=value"),
    ("train.scheduler=cosin", "train.scheduler"),
    ("train.report_to=[tensorbord]", "train.report_to"),
    ("data.encoding=utf9", "unknown text encoding"),
])
def test_bad_recipe_is_one_clear_error(override, message):
    with pytest.raises(FinpeftError, match=message.replace(".", r"\.")):
        load_recipe(None, [override])


def test_switching_method_drops_the_files_method_options():
    from conftest import ROOT
    r = load_recipe(ROOT / "recipes" / "fpb-lora.yaml", ["method=full"])
    assert r.method.model_dump() == {"name": "full"}
    r = load_recipe(ROOT / "recipes" / "fpb-lora.yaml", ["method=dora", "method.r=4"])
    assert r.method.name == "dora" and r.method.r == 4


def test_recipe_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed", encoding="utf-8")
    with pytest.raises(FinpeftError, match="not valid YAML"):
        load_recipe(bad)
    with pytest.raises(FinpeftError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(FinpeftError, match="is empty"):
        load_recipe(tmp_path / "empty.yaml")


def test_resolved_recipe_round_trips(tmp_path):
    r = load_recipe(None, ["method=lora", "method.r=4"])
    path = tmp_path / "recipe.yaml"
    path.write_text(r.to_yaml(), encoding="utf-8")
    assert load_recipe(path) == r
