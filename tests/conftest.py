"""Shared fixtures: real data from ../shared/datasets (or $FINPEFT_DATA_DIR), the packaged MiniLM."""
import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("FINPEFT_DATA_DIR", ROOT.parent / "shared" / "datasets")).resolve()
os.environ["FINPEFT_DATA_DIR"] = str(DATA_DIR)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Feature cache of the frozen-encoder tests: one per session, never the user's ~/.cache.
os.environ["FINPEFT_CACHE_DIR"] = tempfile.mkdtemp(prefix="finpeft-test-cache-")
# Dequantised GGUF models (the LLM track): likewise a fresh cache per session.
os.environ["FINPEFT_MODEL_CACHE"] = tempfile.mkdtemp(prefix="finpeft-test-models-")

HAVE_DATA = (DATA_DIR / "financial_phrasebank").is_dir()

# The fast tier: `pytest -m "not slow"` runs the pure logic (recipes, layering, the scan oracles, the micro-batcher,
# CLI help, data checks on inline frames) in about a minute, with no datasets and no packaged model. A test is
# slow when it uses a fixture that trains or reads data/models, or when its body trains, reads the shared
# datasets, loads a backbone or runs the CLI on real work; new tests are classified the same way, unmarked.
HEAVY_FIXTURES = {"data_dir", "fpb_rows", "full_run", "lora_run", "smol_dir", "smol", "llm_run", "multi_run",
                  "two_task_run", "head_runs", "score_run", "exported", "client", "mpnet_dir", "tiny_t5"}
HEAVY_CALLS = ("train(", "TINY", "DATA_DIR", "data_dir", "bench(", "tune(", "ablate(", "pretrain(", "load_dataset",
               "resolve_backbone", "cached_model_dir", "from_pretrained", "subprocess", "finpeft(", "export(",
               "evaluate(", "predict_file(", "load_recipe(None", "minilm", "mpnet", "run_grid(", "splits(", "load_raw(",
               "corpus_texts(")


def _heavy_source(func) -> bool:
    import inspect
    try:
        body = inspect.getsource(func)
    except (OSError, TypeError):
        return True
    return any(call in body for call in HEAVY_CALLS)


def _is_slow(item) -> bool:
    if item.get_closest_marker("slow") or HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    # a fixture of a test module (e.g. one that trains a run) is heavy by the same rule as a test body
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}) or {}
    if any(_heavy_source(d.func) for ds in defs.values() for d in ds if d.baseid):  # baseid "": pytest's own
        return True
    return _heavy_source(item.function)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        if not item.get_closest_marker("slow") and _is_slow(item):
            item.add_marker(pytest.mark.slow)


def pytest_collection_finish(session):
    if not HAVE_DATA and any(item.get_closest_marker("slow") for item in session.items):
        raise pytest.UsageError(f"tests need the shared datasets at {DATA_DIR} (set FINPEFT_DATA_DIR); without them "
                                "run the fast tier: pytest -m 'not slow'")

# Tiny but real: 96 FPB rows to train on, 48 to validate/test, one epoch.
TINY = ["data.max_train_samples=96", "data.max_eval_samples=48", "train.epochs=1", "train.batch_size=16",
        "train.progress_bar=false", "train.report_to=[]", "train.early_stopping_patience=null"]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture
def fpb_rows(data_dir):
    import pandas as pd
    """FPB training rows, shuffled so any slice has every class."""
    return pd.read_csv(data_dir / "financial_phrasebank/finlora_split/train.csv").sample(frac=1, random_state=0)


@pytest.fixture(scope="session")
def full_run(tmp_path_factory):
    """One tiny full fine-tune shared by the tests that inspect a finished run."""
    from finpeft import train
    out = tmp_path_factory.mktemp("runs") / "full"
    # 192 rows of the all-agree FPB subset x 3 epochs: small enough for CI, clear enough to learn from.
    return train(None, TINY + ["data=fpb-allagree", "data.max_train_samples=192", "train.epochs=3",
                        "train.lr=3e-4"], output=out)


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory):
    from finpeft import train
    out = tmp_path_factory.mktemp("runs") / "lora"
    return train(None, TINY + ["method=lora", "train.lr=1e-3"], output=out)


@pytest.fixture
def browse():
    """browse(app) -> (driver, url): the ASGI app served by uvicorn in a thread, a headless Chromium on it; both
    stopped after the test. Skips without Debian's chromium + chromium-driver, unless FINPEFT_REQUIRE_BROWSER (CI)."""
    import shutil
    import socket
    import threading
    if not (shutil.which("chromium") and shutil.which("chromedriver")) and not os.environ.get("FINPEFT_REQUIRE_BROWSER"):
        pytest.skip("needs Debian's chromium + chromium-driver (apt-get install chromium chromium-driver)")
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    started = []

    def start(app):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium")
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
            opts.add_argument(a)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
        started.append((driver, server, thread))
        return driver, f"http://127.0.0.1:{port}/"

    yield start
    for driver, server, thread in started:
        driver.quit()
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for this session (tests/pgserver.py); skips without Debian's postgresql package,
    unless FINPEFT_REQUIRE_POSTGRES (CI) makes that a failure."""
    from pgserver import PG_MISSING, postgres_server
    try:
        with postgres_server() as url:
            yield url
    except PG_MISSING:
        if os.environ.get("FINPEFT_REQUIRE_POSTGRES"):
            pytest.fail("FINPEFT_REQUIRE_POSTGRES is set but Debian's postgresql package is not installed")
        pytest.skip("needs Debian's postgresql package (apt-get install postgresql)")
