"""Latent caching: encode a dataset once, train the transformer on the stored latents.

    cache_latents("latents", "runs/vae", world="mix", n=10000)     # or corpus="corpus"
    data = LatentDataset("latents")
    stream = LatentStream(data, patch_size=(1, 2, 2), tokens_per_step=4096, max_tokens_per_video=1024)
    batch = stream.next_batch()       # [CachedLatent(latent (C, T', H', W'), caption, id), ...]

Encoding a clip costs far more than a transformer step on its latents, so the training loop
reads latents from here (`cinecube train --latents DIR`) instead of rendering and encoding
every step. A cache folder:

    DIR/index.json                  format, the autoencoder's config and weights digest, what
                                    was encoded (source), shard size, and per finished shard
                                    its file, ids, captions and latent shapes
    DIR/autoencoder/                the autoencoder that made the latents (save_autoencoder)
    DIR/shards/000000.safetensors   tensors "0", "1", ... : latents (C, T', H', W') of mixed
                                    sizes, in item order, posterior means, scaled
    DIR/text.safetensors            tensors "0", "1", ... : the text encoder's per-token
                                    embeddings (L, 384) of each distinct caption, in order of
                                    first appearance; the index names the encoder and its
                                    max_tokens. Training takes them instead of running the text
                                    encoder, which otherwise costs as much as the transformer
                                    step in the first epoch.

Shard k holds items k*S .. k*S+S-1. Each shard is written to a temporary file and renamed,
then the index is rewritten (also atomically), so an interrupted run keeps every finished
shard and a rerun with the same arguments continues at the first missing one.

The stream is a pure function of (seed, index), like the world streams: item order is a
fresh permutation of the cache per epoch, so its state is one integer (plus the seed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..config import AutoencoderConfig
from ..errors import CinecubeError
from ..outputs import check_output_folder, clean_stale_temporaries, staged_file, temporary_path

FORMAT = "cinecube-latents/1"
INDEX_FILE = "index.json"
SHARDS_DIR = "shards"
TEXT_FILE = "text.safetensors"
AUTOENCODER_DIR = "autoencoder"


def is_latent_cache(path: Path) -> bool:
    """Whether a folder holds nothing but a latent cache cinecube wrote (finished or not), so
    `cache_latents` may go on writing into it: a rerun continues it."""
    own = {INDEX_FILE, SHARDS_DIR, TEXT_FILE, AUTOENCODER_DIR}
    return all(entry.name in own or entry.name.startswith(".") for entry in Path(path).iterdir())


# World clips: canvases that are whole latent patches for an 8x autoencoder and a 2x2 patch.
CACHE_CANVASES: tuple[tuple[int, int], ...] = ((32, 32), (48, 48), (64, 64), (48, 64), (64, 48), (32, 64), (64, 32))


@dataclass
class CachedLatent:
    latent: Tensor  # (C, T', H', W')
    caption: str
    id: str
    text: Tensor | None = None  # (L, 384) stored caption embedding, when the cache has them


def _atomic_write_text(path: Path, text: str) -> None:
    with staged_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _world_items(
    world: str,
    n: int,
    seed: int,
    canvases: Sequence[tuple[int, int]],
    frame_counts: Sequence[int],
    object_counts: Sequence[float] | None = None,
) -> Iterator[tuple[np.ndarray, str, str]]:
    """(frames, caption, id) of world clips 0..n-1; sizes drawn from (seed, index)."""
    from .corpus import make_world

    source = make_world(world, "train", seed, object_counts)
    for index in range(n):
        rng = np.random.default_rng([seed, index, 29])
        height, width = canvases[int(rng.integers(len(canvases)))]
        frames = frame_counts[int(rng.integers(len(frame_counts)))]
        sample = source.sample_at(index, height, width, frames)
        yield sample.video, sample.caption, f"{world}/{index}"


def _corpus_items(folder: Path, max_frames: int, multiple: int) -> Iterator[tuple[np.ndarray, str, str]]:
    """(frames, caption, id) of every clip of a folder of captioned videos, in order."""
    from .folder import VideoFolderDataset

    dataset = VideoFolderDataset(folder, fps=8.0, max_frames=max_frames, patch_multiple=multiple)
    if not dataset.entries:
        raise CinecubeError(f"video folder '{folder}' holds no captioned videos")
    for entry in dataset.entries:
        for k, clip in enumerate(dataset.clips_of(entry)):
            name = entry.path.relative_to(dataset.root) if entry.path.is_relative_to(dataset.root) else entry.path
            yield clip, entry.caption, f"{name}#{k}"


def cache_latents(
    out_dir: str | Path,
    autoencoder: str | Path,
    *,
    corpus: str | Path | None = None,
    world: str | None = None,
    n: int | None = None,
    seed: int = 0,
    max_frames: int = 17,
    canvases: Sequence[tuple[int, int]] = CACHE_CANVASES,
    shard_size: int = 256,
    dtype: str = "float32",
    device: str = "cpu",
    progress: bool = True,
    text_max_tokens: int | None = 64,
    object_counts: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Encode a corpus folder or `n` clips of a world into `out_dir`; returns the index.

    Clips are cropped to the autoencoder's layout (1 + tf*k frames, multiples of its spatial
    factor). Rerunning with the same arguments keeps the finished shards and goes on; other
    arguments on an existing cache are refused. The captions' text embeddings are stored too
    (`text_max_tokens`, the model's `text_max_tokens`; None: not stored); a finished cache
    without them gets them on a rerun. `object_counts` reweights 1, 2 and 3 objects a shapes scene.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from ..autoencoder import crop_to_layout, frames_to_tensor, load_autoencoder, save_autoencoder
    from .corpus import check_object_counts_apply

    if (corpus is None) == (world is None):
        raise CinecubeError("give either a corpus folder (--corpus) or a world (--world with --n)")
    if world is not None and (n is None or n < 1):
        raise CinecubeError(f"--n must be at least 1 with --world, got {n}")
    if shard_size < 1:
        raise CinecubeError(f"--shard-size must be at least 1, got {shard_size}")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise CinecubeError(f"dtype {dtype!r} is not allowed; use float32, bfloat16 or float16")
    if max_frames < 1:
        raise CinecubeError(f"--max-frames must be at least 1, got {max_frames}")
    check_object_counts_apply(world, object_counts)  # before anything is written
    out = check_output_folder(out_dir, "--out", kind="latent cache", is_ours=is_latent_cache, force=True)
    network = load_autoencoder(autoencoder, device)
    tf, s = network.config.temporal_factor, network.config.spatial_factor
    frame_counts = tuple(range(1, max_frames + 1, tf))
    source = (
        {"corpus": str(Path(corpus).resolve()), "max_frames": max_frames}
        if corpus is not None
        else {"world": world, "n": n, "seed": seed, "max_frames": max_frames, "canvases": [list(c) for c in canvases]}
    )
    if object_counts is not None:  # only when given, so caches made before the option still match
        source["object_counts"] = [float(w) for w in object_counts]

    out.mkdir(parents=True, exist_ok=True)
    (out / SHARDS_DIR).mkdir(exist_ok=True)
    for folder in (out, out / SHARDS_DIR):
        clean_stale_temporaries(folder)
    ae_dir = out / AUTOENCODER_DIR
    settings = {
        "format": FORMAT,
        "autoencoder": json.loads(json.dumps(dataclasses.asdict(network.config))),
        "autoencoder_sha256": _weights_sha256(network),
        "source": source,
        "shard_size": shard_size,
        "dtype": dtype,
    }
    index_path = out / INDEX_FILE
    shards: list[dict[str, Any]] = []
    if index_path.exists():
        try:
            old = json.loads(index_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CinecubeError(
                f"'{index_path}' is unreadable ({error}); remove the folder or choose another --out"
            ) from None
        if {k: old.get(k) for k in settings} != settings:
            raise CinecubeError(
                f"'{out}' holds a latent cache made with other settings or another autoencoder; choose another --out"
            )
        # Keep the finished shards whose files are still there, in order.
        for shard in old.get("shards", []):
            if not (out / shard["file"]).is_file():
                break
            shards.append(shard)
        if old.get("complete") and len(shards) == len(old.get("shards", [])):
            return _store_text(out, old, text_max_tokens, progress)
    else:
        save_autoencoder(ae_dir, network, replace=True)  # (replacing any left by a run that never wrote an index)

    def write_index(complete: bool) -> dict[str, Any]:
        index = {**settings, "items": sum(sh["count"] for sh in shards), "shards": shards, "complete": complete}
        _atomic_write_text(index_path, json.dumps(index, indent=1) + "\n")
        return index

    write_index(False)
    done = len(shards) * shard_size
    if shards and shards[-1]["count"] < shard_size:  # the last shard was the final one
        return _store_text(out, write_index(True), text_max_tokens, progress)
    items = (
        _corpus_items(Path(corpus), max_frames, s)
        if corpus is not None
        else _world_items(world, n, seed, tuple(canvases), frame_counts, object_counts)
    )
    torch_dtype = getattr(torch, dtype)
    started = time.time()
    bar = tqdm(total=n, initial=done, desc="encoding latents", unit="clip", disable=not progress, dynamic_ncols=True)
    pending: list[tuple[Tensor, str, str]] = []

    def flush() -> None:
        number = len(shards)
        name = f"{SHARDS_DIR}/{number:06d}.safetensors"
        tmp = temporary_path(out / name)
        tensors = {str(i): latent.to(torch_dtype).contiguous() for i, (latent, _, _) in enumerate(pending)}
        save_file(tensors, str(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, out / name)
        shards.append(
            {
                "file": name,
                "count": len(pending),
                "ids": [i for _, _, i in pending],
                "captions": [c for _, c, _ in pending],
                "shapes": [list(latent.shape) for latent, _, _ in pending],
            }
        )
        write_index(False)
        pending.clear()

    try:
        with torch.no_grad():
            for position, (frames, caption, item_id) in enumerate(items):
                if position < done:  # finished in an earlier run
                    continue
                try:
                    clip = crop_to_layout(frames, tf, s)
                except CinecubeError:
                    continue  # smaller than one latent cell
                latent = network.encode(frames_to_tensor(clip).to(device)).cpu()  # (C, T', H', W')
                pending.append((latent, caption, item_id))
                bar.update(1)
                if len(pending) == shard_size:
                    flush()
        if pending:
            flush()
    except SafetensorError as error:
        raise CinecubeError(f"cannot write latent shards in '{out}': {error}") from None
    finally:
        bar.close()
    index = _store_text(out, write_index(True), text_max_tokens, progress)
    index["seconds"] = round(time.time() - started, 2)
    return index


def _distinct_captions(index: dict[str, Any]) -> list[str]:
    """A cache's captions, each once, in order of first appearance: text.safetensors' order."""
    return list(dict.fromkeys(c for shard in index["shards"] for c in shard["captions"]))


def _store_text(out: Path, index: dict[str, Any], max_tokens: int | None, progress: bool) -> dict[str, Any]:
    """Write the text embeddings of a finished cache's captions (if asked and not there yet)."""
    from safetensors.torch import save_file

    from ..text import DEFAULT_ENCODER, get_text_encoder

    if max_tokens is None:
        return index
    settings = {"file": TEXT_FILE, "encoder": DEFAULT_ENCODER, "max_tokens": max_tokens}
    stored = index.get("text") or {}
    if {k: stored.get(k) for k in settings} == settings and (out / TEXT_FILE).is_file():
        return index  # (without loading the text encoder: a rerun on a finished cache is instant)
    captions = _distinct_captions(index)
    embeddings = get_text_encoder(max_tokens).encode_many(captions, progress=progress)
    tmp = temporary_path(out / TEXT_FILE)
    save_file({str(i): e.contiguous() for i, e in enumerate(embeddings)}, str(tmp))
    os.chmod(tmp, 0o644)
    os.replace(tmp, out / TEXT_FILE)
    index = {**index, "text": {**settings, "count": len(captions)}}
    _atomic_write_text(out / INDEX_FILE, json.dumps(index, indent=1) + "\n")
    return index


def _weights_sha256(module: torch.nn.Module) -> str:
    """A digest of a network's tensors (names and values), independent of how they were stored."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


class LatentDataset:
    """One or more finished latent caches, read lazily: one tensor at a time from its shard.

    Several caches (e.g. one per world) are read as their concatenation, in the order given;
    they must have been made with the same autoencoder weights.
    """

    def __init__(self, folders: str | Path | Sequence[str | Path]):
        if isinstance(folders, (str, Path)):
            folders = [folders]
        if not folders:
            raise CinecubeError("no latent cache given")
        self.folders = [Path(f) for f in folders]
        self.folder = self.folders[0]
        self.indexes = [self._read_index(f) for f in self.folders]
        digests = {index.get("autoencoder_sha256") for index in self.indexes}
        if len(digests) > 1:
            raise CinecubeError(
                "latent caches "
                + ", ".join(f"'{f}'" for f in self.folders)
                + " were made with different autoencoders; give caches of one autoencoder"
            )
        from ..config import _from_dict

        self.index = self.indexes[0]
        self.autoencoder_config: AutoencoderConfig = _from_dict(AutoencoderConfig, self.index["autoencoder"])
        self.autoencoder_dir = self.folder / AUTOENCODER_DIR
        # item -> (cache number, shard number, key in the shard)
        self._where = [
            (c, k, str(i))
            for c, index in enumerate(self.indexes)
            for k, shard in enumerate(index["shards"])
            for i in range(shard["count"])
        ]
        shards = [shard for index in self.indexes for shard in index["shards"]]
        self.captions = [c for shard in shards for c in shard["captions"]]
        self.ids = [i for shard in shards for i in shard["ids"]]
        self.shapes = [tuple(x) for shard in shards for x in shard["shapes"]]
        if not self._where:
            raise CinecubeError(f"latent cache '{self.folder}' holds no latents")
        self._open: dict[tuple[int, int], Any] = {}
        # Stored caption embeddings: used only when every cache has them from one encoder setting.
        texts = [index.get("text") for index in self.indexes]
        settings = {(t["encoder"], t["max_tokens"]) if t else None for t in texts}
        self.text_encoder_settings: tuple[str, int] | None = None
        if len(settings) == 1 and None not in settings and all((f / TEXT_FILE).is_file() for f in self.folders):
            self.text_encoder_settings = next(iter(settings))
            numbers = [{c: i for i, c in enumerate(_distinct_captions(index))} for index in self.indexes]
            self._text_key = [str(numbers[c][caption]) for (c, _, _), caption in zip(self._where, self.captions)]
        self._text_open: dict[int, Any] = {}

    @staticmethod
    def _read_index(folder: Path) -> dict[str, Any]:
        index_path = folder / INDEX_FILE
        try:
            index = json.loads(index_path.read_text())
        except FileNotFoundError:
            raise CinecubeError(
                f"'{folder}' is not a latent cache (no {INDEX_FILE}); make one with `cinecube data cache-latents`"
            ) from None
        except (OSError, json.JSONDecodeError) as error:
            raise CinecubeError(f"latent cache '{folder}': {INDEX_FILE} is unreadable ({error})") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise CinecubeError(f"latent cache '{folder}': {INDEX_FILE} is not a {FORMAT} index")
        if not index.get("complete"):
            raise CinecubeError(
                f"latent cache '{folder}' is unfinished; rerun the same "
                "`cinecube data cache-latents` command to complete it"
            )
        return index

    def __len__(self) -> int:
        return len(self._where)

    def __getitem__(self, item: int) -> CachedLatent:
        from safetensors import SafetensorError, safe_open

        cache, shard, key = self._where[item]
        handle = self._open.get((cache, shard))
        if handle is None:
            folder = self.folders[cache]
            path = folder / self.indexes[cache]["shards"][shard]["file"]
            try:
                handle = safe_open(str(path), framework="pt")
            except (SafetensorError, OSError) as error:
                raise CinecubeError(f"latent cache '{folder}': {path.name} is unreadable ({error})") from None
            if len(self._open) >= 256:  # (reopening a shard costs ~0.4 ms an item)
                self._open.pop(next(iter(self._open)))
            self._open[(cache, shard)] = handle
        latent = handle.get_tensor(key).float()
        return CachedLatent(latent, self.captions[item], self.ids[item], self._text_of(item, cache))

    def _text_of(self, item: int, cache: int) -> Tensor | None:
        from safetensors import SafetensorError, safe_open

        if self.text_encoder_settings is None:
            return None
        handle = self._text_open.get(cache)
        if handle is None:
            path = self.folders[cache] / TEXT_FILE
            try:
                handle = self._text_open[cache] = safe_open(str(path), framework="pt")
            except (SafetensorError, OSError) as error:
                raise CinecubeError(
                    f"latent cache '{self.folders[cache]}': {TEXT_FILE} is unreadable ({error})"
                ) from None
        return handle.get_tensor(self._text_key[item])


class LatentStream:
    """Token-budget batches of cached latents, like `TokenBudgetStream` for rendered videos.

    Stream index i is item perm_e[i mod N] of epoch e = i // N, perm_e a permutation drawn
    from (seed, e). Latents whose height or width is not a whole number of patches are
    center-cropped to one; items above `max_tokens_per_video` are passed over.
    """

    def __init__(
        self,
        data: LatentDataset,
        patch_size: tuple[int, int, int],
        tokens_per_step: int,
        max_tokens_per_video: int,
        seed: int = 0,
        next_index: int = 0,
    ):
        from ..patches import token_grid

        self.data = data
        self.patch_size = tuple(patch_size)
        self.tokens_per_step = tokens_per_step
        self.max_tokens_per_video = min(max_tokens_per_video, tokens_per_step)
        self.seed = seed
        self.next_index = next_index
        _, ph, pw = self.patch_size
        self._tokens = []
        for _, t, h, w in data.shapes:
            ch, cw = h // ph * ph, w // pw * pw
            self._tokens.append(int(np.prod(token_grid((t, ch, cw), self.patch_size))) if ch and cw else 0)
        if not any(0 < k <= self.max_tokens_per_video for k in self._tokens):
            raise CinecubeError(
                f"no cached latent fits in {self.max_tokens_per_video} tokens with patch {patch_size}: "
                "raise --tokens-per-step (tokens_per_step and max_tokens_per_video)"
            )
        self._epoch, self._order = -1, np.arange(0)

    def item_of(self, index: int) -> int:
        n = len(self.data)
        epoch = index // n
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = np.random.default_rng([self.seed, epoch, 31]).permutation(n)
        return int(self._order[index % n])

    def _fits(self, item: int) -> bool:
        return 0 < self._tokens[item] <= self.max_tokens_per_video

    def _cropped(self, item: int) -> CachedLatent:
        cached = self.data[item]
        _, ph, pw = self.patch_size
        h, w = cached.latent.shape[-2:]
        ch, cw = h // ph * ph, w // pw * pw
        top, left = (h - ch) // 2, (w - cw) // 2
        cached.latent = cached.latent[..., top : top + ch, left : left + cw]
        return cached

    def next_plan(self) -> list[tuple[int, int]]:
        """The (stream index, tokens) of the next batch, without reading the latents (see
        TokenBudgetStream.next_plan)."""
        plan, used = [], 0
        while True:
            item = self.item_of(self.next_index)
            if not self._fits(item):
                self.next_index += 1
                continue
            tokens = self._tokens[item]
            if plan and used + tokens > self.tokens_per_step:
                return plan  # this latent opens the next batch
            plan.append((self.next_index, tokens))
            used += tokens
            self.next_index += 1

    def load(self, index: int) -> CachedLatent:
        return self._cropped(self.item_of(index))

    def next_batch(self) -> list[CachedLatent]:
        return [self.load(index) for index, _ in self.next_plan()]

    def state_dict(self) -> dict[str, int]:
        return {"next_index": self.next_index, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.next_index = int(state["next_index"])
        self.seed = int(state["seed"])
