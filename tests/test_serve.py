"""`finpeft serve`: the API on a tiny trained run (happy path, limits, key, metrics, micro-batching) and the
web page driven in real headless Chromium."""
import asyncio
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from finpeft.inference.serve import MicroBatcher, ServeSettings, create_app, resolve_model_dir  # noqa: E402

KEY = {"x-api-key": "s3cret"}


def wait_ready(client, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"not ready: {client.get('/readyz').json()}")


@pytest.fixture(scope="module")
def client(full_run):
    app = create_app(full_run, ServeSettings(max_texts=4, max_chars=200, max_body_bytes=4096, api_key="s3cret"))
    with TestClient(app) as c:
        wait_ready(c)
        yield c


def test_predict_happy_path(client, full_run):
    from finpeft import load
    texts = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.", "Sales fell 20% and the company cut jobs."]
    r = client.post("/v1/predict", json={"texts": texts}, headers=KEY)
    assert r.status_code == 200
    body = r.json()
    assert body["model"]["name"] == full_run.name and body["model"]["backend"] == "torch"
    assert body["model"]["version"]
    expected = load(full_run).predict(texts)
    for got, want in zip(body["predictions"], expected):
        assert got["label"] == want["label"]
        assert sum(got["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        p = got["probabilities"]
        assert got["score"] == pytest.approx(p["positive"] - p["negative"], abs=1e-5)


@pytest.mark.parametrize("kwargs, status", [
    ({"json": {"texts": ["a"] * 5}}, 422),                    # over max_texts
    ({"json": {"texts": ["x" * 201]}}, 422),                  # over max_chars
    ({"json": {"texts": []}}, 422),                           # nothing to score
    ({"json": {"texts": [""]}}, 422),                         # an empty text
    ({"json": {"texts": ["ok", " \n\t "]}}, 422),              # a whitespace-only text
    ({"json": {"texts": "one string"}}, 422),                 # not a list
    ({"json": {"texts": [1, None]}}, 422),                    # not strings
    ({"json": {"text": ["a"]}}, 422),                         # wrong field
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422),
    ({"content": b"texts=a", "headers": {"content-type": "text/plain"}}, 422),
    ({"content": b'{"texts": ["\\ud800"]}', "headers": {"content-type": "application/json"}}, 422),  # lone surrogate
    ({"content": b'{"texts": ["\xff\xfe"]}', "headers": {"content-type": "application/json"}}, 422),  # not UTF-8
    ({"content": b"[" * 2000 + b"]" * 2000, "headers": {"content-type": "application/json"}}, 422),  # too deep
    ({"content": b"x" * 5000, "headers": {"content-type": "application/json"}}, 413),
    ({"content": (b"x" * 1000 for _ in range(6)), "headers": {"content-type": "application/json"}}, 413),  # chunked
])
def test_limits_and_malformed_bodies(client, kwargs, status):
    headers = {**KEY, **kwargs.pop("headers", {})}
    r = client.post("/v1/predict", headers=headers, **kwargs)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()  # one error schema for every 4xx: {"error": one line, "details": [...] optional}
    assert isinstance(body["error"], str) and body["error"] and set(body) <= {"error", "details"}


def test_api_key_enforced(client):
    ok = {"json": {"texts": ["Profit rose."]}}
    assert client.post("/v1/predict", **ok).status_code == 401
    assert client.post("/v1/predict", headers={"x-api-key": "s3cre"}, **ok).status_code == 401
    assert client.post("/v1/predict", headers=KEY, **ok).status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/healthz").status_code == 200  # probes need no key


def test_health_docs_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["model"]["labels"] == ["negative", "neutral", "positive"]
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
    client.post("/v1/predict", json={"texts": ["Profit rose.", "Sales fell."]}, headers=KEY)
    text = client.get("/metrics", headers=KEY).text
    assert 'finpeft_requests_total{path="/v1/predict",status="200"}' in text
    assert "finpeft_request_latency_seconds_bucket" in text and "finpeft_batch_size_sum" in text


def test_readyz_until_loaded(full_run):
    gate = threading.Event()

    def slow_loader(model_dir):
        gate.wait(30)
        from finpeft.inference.predictor import Predictor
        return Predictor(model_dir)

    with TestClient(create_app(full_run, loader=slow_loader)) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 503
        assert c.post("/v1/predict", json={"texts": ["a"]}).status_code == 503
        gate.set()
        wait_ready(c)
        assert c.post("/v1/predict", json={"texts": ["a"]}).status_code == 200


def test_microbatcher_joins_concurrent_requests():
    calls = []

    def predict_proba(texts):
        calls.append(len(texts))
        return np.array([[len(t), 0.0] for t in texts])

    async def main():
        b = MicroBatcher(predict_proba, max_batch=64, max_wait_ms=50)
        b.start()
        outs = await asyncio.gather(*(b.submit(["x" * i] * 2) for i in range(1, 11)))
        await b.stop()
        return outs

    outs = asyncio.run(main())
    assert calls == [20]  # ten requests, one forward pass
    for i, o in enumerate(outs, start=1):  # each request gets its own rows back
        assert o[:, 0].tolist() == [i, i]


def test_microbatcher_caps_batch_and_reports_errors():
    calls = []

    def predict_proba(texts):
        calls.append(len(texts))
        if "boom" in texts:
            raise RuntimeError("boom")
        return np.zeros((len(texts), 2))

    async def main():
        b = MicroBatcher(predict_proba, max_batch=8, max_wait_ms=50)
        b.start()
        outs = await asyncio.gather(*(b.submit(["a"] * 4) for _ in range(4)))
        with pytest.raises(RuntimeError):
            await b.submit(["boom"])
        await b.stop()
        return outs

    assert len(asyncio.run(main())) == 4
    assert calls[:2] == [8, 8]


def test_microbatcher_never_exceeds_max_batch_and_isolates_failures():
    calls = []

    def predict_proba(texts):
        calls.append(len(texts))
        if "boom" in texts:
            raise ValueError("cannot score")
        return np.zeros((len(texts), 2))

    async def main():
        b = MicroBatcher(predict_proba, max_batch=8, max_wait_ms=0)  # 0 ms: what already waits still joins
        b.start()
        outs = await asyncio.gather(*(b.submit(["a"] * 5) for _ in range(4)), b.submit(["a", "boom"]),
                                    return_exceptions=True)
        await b.stop()
        return outs

    outs = asyncio.run(main())
    assert max(calls) <= 8 and 7 in calls  # 5 + 5 would not fit, 5 + 2 did: batched with nothing waiting
    assert [type(o).__name__ for o in outs] == ["ndarray"] * 4 + ["ValueError"]  # only the bad request fails


def test_onnx_backend_needs_an_export(full_run):
    from finpeft.errors import FinpeftError
    assert resolve_model_dir(full_run, "torch") == full_run
    with pytest.raises(FinpeftError, match="finpeft export"):
        resolve_model_dir(full_run, "onnx")


def test_web_page_in_headless_chromium(full_run, browse):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    driver, url = browse(create_app(full_run))
    driver.get(url)
    WebDriverWait(driver, 120).until(lambda d: "minilm" in d.find_element(By.ID, "model").text.lower()
                                      or "full" in d.find_element(By.ID, "model").text)
    sentence = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn."
    box = driver.find_element(By.ID, "texts")
    box.clear()
    box.send_keys(sentence)
    driver.find_element(By.ID, "score").click()
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .result"))
    result = driver.find_element(By.CSS_SELECTOR, "#results .result")
    from finpeft import load
    want = load(full_run).predict([sentence])[0]
    assert result.find_element(By.CLASS_NAME, "text").text == sentence
    assert result.find_element(By.CLASS_NAME, "label").text.lower() == want["label"]
    assert not driver.find_element(By.ID, "taskrow").is_displayed()  # one task: no task picker
    bars = result.find_elements(By.CLASS_NAME, "bar")
    assert len(bars) == 3
    shown = {b.find_element(By.TAG_NAME, "span").text: float(b.find_element(By.CLASS_NAME, "prob").text.rstrip("%"))
             for b in bars}
    for label, p in want["probabilities"].items():
        assert shown[label] == pytest.approx(100 * p, abs=0.06)
    assert driver.find_element(By.ID, "error").text == ""


def test_serves_an_onnx_export(full_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from finpeft.inference.onnx import export_onnx
    exported = export_onnx(full_run, tmp_path / "onnx")
    assert resolve_model_dir(exported, "onnx") == exported
    texts = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.", "Sales fell 20%."]
    with TestClient(create_app(exported)) as c:
        wait_ready(c)
        body = c.post("/v1/predict", json={"texts": texts}).json()
    assert body["model"]["backend"] == "onnx"
    from finpeft import load
    assert [p["label"] for p in body["predictions"]] == [p["label"] for p in load(full_run).predict(texts)]


def test_a_wrong_method_answers_the_one_error_shape_with_details(client):
    r = client.get("/v1/predict", headers=KEY)
    assert r.status_code == 405
    body = r.json()
    assert body["error"] and body["details"][0]["type"] == "http_405" and "POST" in body["details"][0]["allowed"]


def test_a_classifier_prediction_carries_no_text_field(client):
    r = client.post("/v1/predict", json={"texts": ["Profit rose."]}, headers=KEY)
    assert r.status_code == 200 and "text" not in r.json()["predictions"][0], r.json()
