"""Latent caching, the cached-latent stream, and transformer training in latent space."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cinecube.autoencoder import CausalVideoAutoencoder, load_model_autoencoder, save_autoencoder
from cinecube.config import AUTOENCODER_PRESETS, PRESETS, TRAIN_PRESETS
from cinecube.data import latents as latents_module
from cinecube.data.latents import LatentDataset, LatentStream, cache_latents
from cinecube.errors import CheckpointError, CinecubeError
from cinecube.model_folder import checkpoint_dirs, load_model_folder
from cinecube.train import loop, precision
from cinecube.train.loop import train
from cinecube.train.stream import fit_mix, make_world

TINY_AE = AUTOENCODER_PRESETS["tiny"]
LATENT_MODEL = dataclasses.replace(PRESETS["tiny"], autoencoder=TINY_AE, patch_size=(1, 2, 2))


@pytest.fixture(scope="module")
def autoencoder_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ae") / "vae"
    save_autoencoder(folder, CausalVideoAutoencoder(TINY_AE).eval())
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory, autoencoder_dir):
    out = tmp_path_factory.mktemp("cache") / "latents"
    cache_latents(out, autoencoder_dir, world="mix", n=10, shard_size=4, max_frames=9, progress=False)
    return out


@pytest.fixture
def no_samples(monkeypatch):
    monkeypatch.setattr(loop, "write_samples", lambda *a, **k: None)


def quick(steps, **kw):
    return dataclasses.replace(
        TRAIN_PRESETS["tiny"],
        steps=steps,
        sample_every=10_000,
        tokens_per_step=128,
        max_tokens_per_video=128,
        checkpoint_every=kw.pop("checkpoint_every", 2),
        log_every=1,
        **kw,
    )


def test_cache_holds_sharded_latents_of_mixed_sizes_with_captions(cache, autoencoder_dir):
    index = json.loads((cache / "index.json").read_text())
    assert index["complete"] and index["items"] == 10
    assert [s["count"] for s in index["shards"]] == [4, 4, 2]
    data = LatentDataset(cache)
    assert len(data) == 10 and len(set(data.shapes)) > 1
    # Each stored latent is the encoding of its world clip, and the stored shapes match.
    from cinecube.autoencoder import frames_to_tensor, load_autoencoder
    from cinecube.data.corpus import make_world as footage_world

    network = load_autoencoder(autoencoder_dir)
    rng = np.random.default_rng([0, 5, 29])
    canvases = latents_module.CACHE_CANVASES
    height, width = canvases[int(rng.integers(len(canvases)))]
    frames = (1, 5, 9)[int(rng.integers(3))]
    clip = footage_world("mix", "train", 0).sample_at(5, height, width, frames).video
    with torch.no_grad():
        expected = network.encode(frames_to_tensor(clip))
    item = data[5]
    assert item.id == "mix/5" and item.caption and tuple(item.latent.shape) == data.shapes[5]
    torch.testing.assert_close(item.latent, expected, rtol=1e-5, atol=1e-6)
    assert (cache / "autoencoder" / "model.safetensors").is_file()
    assert not list(cache.rglob(".*tmp*"))


def test_interrupted_cache_keeps_finished_shards_and_continues(tmp_path, autoencoder_dir, cache, monkeypatch):
    out = tmp_path / "latents"
    real_encode = CausalVideoAutoencoder.encode
    calls = {"n": 0}

    def failing_encode(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real_encode(self, *args, **kwargs)

    monkeypatch.setattr(CausalVideoAutoencoder, "encode", failing_encode)
    with pytest.raises(KeyboardInterrupt):
        cache_latents(out, autoencoder_dir, world="mix", n=10, shard_size=4, max_frames=9, progress=False)
    index = json.loads((out / "index.json").read_text())
    assert not index["complete"] and [s["count"] for s in index["shards"]] == [4]
    with pytest.raises(CinecubeError, match="unfinished"):
        LatentDataset(out)
    first = (out / "shards" / "000000.safetensors").stat().st_mtime_ns

    monkeypatch.setattr(CausalVideoAutoencoder, "encode", real_encode)
    calls["n"] = 0
    counting = {"n": 0}

    def counting_encode(self, *args, **kwargs):
        counting["n"] += 1
        return real_encode(self, *args, **kwargs)

    monkeypatch.setattr(CausalVideoAutoencoder, "encode", counting_encode)
    cache_latents(out, autoencoder_dir, world="mix", n=10, shard_size=4, max_frames=9, progress=False)
    assert counting["n"] == 6  # only the unfinished items
    assert (out / "shards" / "000000.safetensors").stat().st_mtime_ns == first
    resumed, straight = LatentDataset(out), LatentDataset(cache)
    assert resumed.ids == straight.ids and resumed.captions == straight.captions
    for i in range(len(straight)):
        torch.testing.assert_close(resumed[i].latent, straight[i].latent)

    with pytest.raises(CinecubeError, match="other settings"):
        cache_latents(out, autoencoder_dir, world="mix", n=11, shard_size=4, max_frames=9, progress=False)


def test_a_corpus_folder_is_cached_clip_by_clip(tmp_path, autoencoder_dir):
    from cinecube.data.corpus import build_corpus

    build_corpus(tmp_path / "corpus", "mix", n=2, min_size=32, max_size=48, frames=12, progress=False)
    cache_latents(
        tmp_path / "latents", autoencoder_dir, corpus=tmp_path / "corpus", shard_size=3, max_frames=9, progress=False
    )
    data = LatentDataset(tmp_path / "latents")
    # Each 12-frame clip gives a 9-frame clip (3 latent frames) and a 3-frame rest (cropped to 1).
    assert data.ids == ["clips/000000.mp4#0", "clips/000000.mp4#1", "clips/000001.mp4#0", "clips/000001.mp4#1"]
    assert [shape[1] for shape in data.shapes] == [3, 1, 3, 1]
    captions = [
        json.loads(line)["caption"] for line in (tmp_path / "corpus" / "captions.jsonl").read_text().splitlines()
    ]
    assert data.captions == [captions[0], captions[0], captions[1], captions[1]]


def test_bad_cache_arguments_get_one_line_errors(tmp_path, autoencoder_dir):
    with pytest.raises(CinecubeError, match="either"):
        cache_latents(tmp_path / "a", autoencoder_dir, progress=False)
    with pytest.raises(CinecubeError, match="--n"):
        cache_latents(tmp_path / "a", autoencoder_dir, world="shapes", progress=False)
    with pytest.raises(CheckpointError):
        cache_latents(tmp_path / "a", tmp_path / "missing", world="shapes", n=2, progress=False)
    with pytest.raises(CinecubeError, match="not a latent cache"):
        LatentDataset(tmp_path)


def test_several_caches_read_as_one_and_must_share_their_autoencoder(tmp_path, cache, autoencoder_dir):
    # A second cache of another world on chosen canvases (the `--canvases` of cache-latents).
    other = tmp_path / "shapes"
    cache_latents(
        other, autoencoder_dir, world="shapes", n=3, shard_size=2, max_frames=5, canvases=[(48, 80)], progress=False
    )
    first, second = LatentDataset(cache), LatentDataset(other)
    assert {shape[2:] for shape in second.shapes} == {(6, 10)}  # 48x80 / 8
    both = LatentDataset([cache, other])
    assert len(both) == len(first) + len(second)
    assert both.ids == first.ids + second.ids and both.captions == first.captions + second.captions
    for item in (0, len(first) - 1, len(first), len(both) - 1):
        source, index = (first, item) if item < len(first) else (second, item - len(first))
        assert both[item].id == source[index].id
        torch.testing.assert_close(both[item].latent, source[index].latent, rtol=0, atol=0)
    # Another autoencoder's cache cannot join.
    torch.manual_seed(1)
    save_autoencoder(tmp_path / "vae2", CausalVideoAutoencoder(TINY_AE).eval())
    cache_latents(tmp_path / "foreign", tmp_path / "vae2", world="shapes", n=1, max_frames=1, progress=False)
    with pytest.raises(CinecubeError, match="different autoencoders"):
        LatentDataset([cache, tmp_path / "foreign"])


def test_cache_latents_command_takes_canvases_and_refuses_bad_ones(tmp_path, autoencoder_dir, capsys):
    from cinecube.cli import main

    out = tmp_path / "lat"
    assert (
        main(
            [
                "data",
                "cache-latents",
                "--autoencoder",
                str(autoencoder_dir),
                "--world",
                "shapes",
                "--n",
                "2",
                "--max-frames",
                "1",
                "--canvases",
                "32x64, 64x32",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert {shape[2:] for shape in LatentDataset(out).shapes} <= {(4, 8), (8, 4)}
    assert (
        main(
            [
                "data",
                "cache-latents",
                "--autoencoder",
                str(autoencoder_dir),
                "--world",
                "shapes",
                "--n",
                "2",
                "--canvases",
                "32x",
                "--out",
                str(tmp_path / "bad"),
            ]
        )
        != 0
    )
    assert "'32x' is not HEIGHTxWIDTH" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_latent_stream_is_deterministic_and_resumes_from_one_integer(cache):
    data = LatentDataset(cache)
    straight = LatentStream(data, (1, 2, 2), 24, 24, seed=3)
    batches = [straight.next_batch() for _ in range(6)]  # several epochs
    assert all(batches)
    for batch in batches:
        tokens = sum(b.latent.shape[1] * (b.latent.shape[2] // 2) * (b.latent.shape[3] // 2) for b in batch)
        assert tokens <= 24 or len(batch) == 1
        assert all(b.latent.shape[2] % 2 == 0 and b.latent.shape[3] % 2 == 0 for b in batch)
    again = LatentStream(data, (1, 2, 2), 24, 24, seed=3)
    for _ in range(2):
        again.next_batch()
    state = again.state_dict()
    assert set(state) == {"next_index", "seed"}
    resumed = LatentStream(data, (1, 2, 2), 24, 24, seed=0)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    for expected in batches[2:]:
        got = resumed.next_batch()
        assert [b.id for b in got] == [b.id for b in expected]
    # Every item comes once per epoch, in a new order each epoch; items above the budget are passed over.
    epochs = [[straight.item_of(e * 10 + i) for i in range(10)] for e in range(3)]
    assert all(sorted(order) == list(range(10)) for order in epochs) and epochs[0] != epochs[1]
    seen = {b.id for batch in batches for b in batch}
    fits = {data.ids[i] for i, (c, t, h, w) in enumerate(data.shapes) if t * (h // 2) * (w // 2) <= 24}
    assert seen == fits and len(fits) < 10


def test_latent_training_resumes_exactly_and_checkpoints_carry_the_autoencoder(tmp_path, cache, no_samples):
    straight = tmp_path / "straight"
    train(LATENT_MODEL, quick(4), straight, progress=False, latents=cache)
    resumed = tmp_path / "resumed"
    train(LATENT_MODEL, quick(4), resumed, progress=False, latents=cache, stop_after=2)
    train(LATENT_MODEL, quick(4), resumed, progress=False, latents=cache, resume=True)
    for name in ("model.safetensors", "training/raw.safetensors"):
        a = load_file(str(checkpoint_dirs(straight)[-1] / name))
        b = load_file(str(checkpoint_dirs(resumed)[-1] / name))
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7, msg=key)
    state = json.loads((checkpoint_dirs(resumed)[-1] / "training" / "state.json").read_text())
    assert set(state["stream"]) == {"next_index", "seed"}

    # The newest checkpoint alone rebuilds the model and its autoencoder.
    from cinecube.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(resumed)
    assert isinstance(pipe.autoencoder, CausalVideoAutoencoder)
    video = pipe("a red circle moving right", frames=5, height=32, width=48, steps=2, progress=False)
    assert video.frames.shape == (5, 32, 48, 3)
    # Any frame count: the fewest latent frames that cover it are made (16 -> 1 + 4*4 = 17, 5
    # latent frames), and the surplus frame is dropped.
    assert pipe.num_tokens(16, 32, 48) == pipe.num_tokens(17, 32, 48) == 5 * 2 * 3
    assert pipe.num_tokens(17, 32, 48) != pipe.num_tokens(18, 32, 48)
    video = pipe("a red circle moving right", frames=16, height=32, width=48, steps=2, progress=False)
    assert video.frames.shape == (16, 32, 48, 3)
    # Sizes it does not allow map to the nearest it does (16-px cells, >= 32 px for the
    # watermark, 1..max_frames); allowed ones stay as they are.
    assert pipe.nearest_allowed(5, 32, 48) == (5, 32, 48)
    assert pipe.nearest_allowed(10, 40, 72) == (10, 48, 80)  # halves round up
    assert pipe.nearest_allowed(1, 8, 8) == (1, 32, 32)
    assert pipe.nearest_allowed(1000, 10_000, 56)[0] == pipe.config.max_frames
    assert pipe.config.token_pixels == (16, 16) and pipe.nearest_allowed(10, 40, 72, grid=32) == (
        10,
        32,
        64,
    )  # a coarser grid
    with pytest.raises(ValueError, match="multiple of the model's cell of 16 px"):
        pipe.nearest_allowed(10, 40, 72, grid=24)
    for size in ((10, 40, 72), (20, 56, 40)):
        pipe.validate("a red circle", *pipe.nearest_allowed(*size), steps=2, guidance=3.0)


def test_missing_or_corrupt_autoencoder_folder_is_a_checkpoint_error(tmp_path, cache, no_samples):
    import shutil

    run = tmp_path / "run"
    train(LATENT_MODEL, quick(1), run, progress=False, latents=cache)
    ckpt = checkpoint_dirs(run)[-1]
    config = load_model_folder(ckpt).model_config
    (ckpt / "autoencoder" / "model.safetensors").unlink()
    (ckpt / "autoencoder" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model_autoencoder(ckpt, config)
    shutil.rmtree(ckpt / "autoencoder")
    with pytest.raises(CheckpointError, match="no autoencoder/ folder"):
        load_model_autoencoder(ckpt, config)
    from cinecube.pipeline import Pipeline

    with pytest.raises(CheckpointError):
        Pipeline.from_pretrained(ckpt)


def test_training_in_latent_space_from_a_world_encodes_each_step(tmp_path, autoencoder_dir, no_samples):
    run = tmp_path / "run"
    result = train(LATENT_MODEL, quick(2), run, world="shapes", progress=False, autoencoder=autoencoder_dir)
    assert result.step == 2 and np.isfinite(result.last_loss)
    assert (run / "autoencoder" / "config.json").is_file()
    with pytest.raises(CinecubeError, match="--autoencoder"):
        train(LATENT_MODEL, quick(2), tmp_path / "other", progress=False)


def test_footage_worlds_in_the_training_loop_and_pixel_mix_unchanged():
    train_config = TRAIN_PRESETS["tiny"]
    for name in ("fashion", "pans", "mix"):
        world, mix = make_world(name, train_config, seed=0)
        sample = world.sample_at(3, 32, 48, 4)
        assert sample.video.shape == (4, 32, 48, 3) and sample.caption
    world, mix = make_world("shapes", train_config, seed=0)
    assert fit_mix(mix, PRESETS["small"], train_config) is mix  # pixel models: sizes untouched
    latent_mix = fit_mix(mix, LATENT_MODEL, train_config)
    assert all(h % 16 == 0 and w % 16 == 0 for h, w in latent_mix.canvases)
    assert all((f - 1) % 4 == 0 for f in latent_mix.frame_counts) and len(latent_mix.frame_counts) >= 2
    with pytest.raises(CinecubeError, match="allowed"):
        make_world("kinetics", train_config, seed=0)


def test_cache_stores_caption_embeddings_and_training_uses_them(
    tmp_path, autoencoder_dir, cache, no_samples, monkeypatch
):
    from cinecube.text import TextEncoder, get_text_encoder

    # The module's cache (64 tokens, the default) holds one embedding per distinct caption.
    index = json.loads((cache / "index.json").read_text())
    assert index["text"] == {
        "file": "text.safetensors",
        "encoder": "all-MiniLM-L6-v2",
        "max_tokens": 64,
        "count": len(set(LatentDataset(cache).captions)),
    }
    data = LatentDataset(cache)
    assert data.text_encoder_settings == ("all-MiniLM-L6-v2", 64)
    encoder = get_text_encoder(64)
    for item in (data[0], data[7]):
        torch.testing.assert_close(item.text, encoder._encode_one(item.caption), rtol=1e-4, atol=1e-4)

    # A cache made without them gets them when the same command is rerun.
    out = tmp_path / "latents"
    cache_latents(out, autoencoder_dir, world="mix", n=3, max_frames=5, progress=False, text_max_tokens=None)
    assert "text" not in json.loads((out / "index.json").read_text()) and not (out / "text.safetensors").exists()
    assert LatentDataset(out).text_encoder_settings is None and LatentDataset(out)[0].text is None
    cache_latents(out, autoencoder_dir, world="mix", n=3, max_frames=5, progress=False, text_max_tokens=32)
    assert LatentDataset(out).text_encoder_settings == ("all-MiniLM-L6-v2", 32)
    # Caches whose embeddings differ in encoder settings are read without them.
    assert LatentDataset([out, cache]).text_encoder_settings is None

    # Training with the model's token limit (32) never runs the text encoder on a caption;
    # the stored embedding is what the model sees.
    encoded = []
    real_encode_one = TextEncoder._encode_one
    monkeypatch.setattr(
        TextEncoder, "_encode_one", lambda self, prompt: encoded.append(prompt) or real_encode_one(self, prompt)
    )
    train(LATENT_MODEL, quick(2), tmp_path / "run", progress=False, latents=out)
    assert set(encoded) <= {""}  # only the unconditional prompt of caption dropout
    stored = LatentDataset(out)[0]
    assert torch.equal(get_text_encoder(32)._cache[stored.caption], stored.text)
    get_text_encoder(32)._cache.clear()  # (earlier tests encoded these captions)
    train(LATENT_MODEL, quick(2), tmp_path / "run-live", progress=False, latents=cache)
    assert set(encoded) - {""}  # 64-token embeddings do not fit this model: encoded live


def test_bf16_autocast_is_used_only_where_bf16_matmuls_pay(monkeypatch):
    speedup = precision.bf16_matmul_speedup()
    assert speedup > 0
    assert precision.bf16_supported(torch.device("cpu")) == (speedup >= 1.25)
    for measured, expected in ((0.5, False), (1.1, False), (2.8, True)):
        monkeypatch.setattr(precision, "bf16_matmul_speedup", lambda measured=measured: measured)
        assert precision.bf16_supported(torch.device("cpu")) is expected


def test_object_counts_reweight_shapes_scenes_and_are_part_of_the_cache_settings(tmp_path, autoencoder_dir, capsys):
    from cinecube.cli import main
    from cinecube.data.corpus import make_world

    def counts(weights):
        world = make_world("shapes", "train", 0, weights)
        return [len(world.sample_at(i, 64, 64, 4).truth["scene"]["objects"]) for i in range(12)]

    assert counts((1, 0, 0)) == [1] * 12
    crowded = counts((0, 0, 1))
    assert min(crowded) >= 2 and crowded.count(3) >= 9  # a crowded canvas may drop one

    def cache(out, *extra):
        return main(
            [
                "data",
                "cache-latents",
                "--autoencoder",
                str(autoencoder_dir),
                "--world",
                "shapes",
                "--n",
                "2",
                "--max-frames",
                "1",
                "--out",
                str(out),
                *extra,
            ]
        )

    assert cache(tmp_path / "lat", "--object-counts", "0,0,1") == 0
    index = json.loads((tmp_path / "lat" / "index.json").read_text())
    assert index["source"]["object_counts"] == [0.0, 0.0, 1.0]
    assert cache(tmp_path / "lat", "--object-counts", "0,1,0") != 0  # other settings: refused
    assert "other settings" in capsys.readouterr().err
    assert cache(tmp_path / "bad", "--object-counts", "1,2") != 0
    assert "three non-negative weights" in capsys.readouterr().err
    assert (
        main(
            [
                "data",
                "cache-latents",
                "--autoencoder",
                str(autoencoder_dir),
                "--world",
                "fashion",
                "--n",
                "2",
                "--object-counts",
                "0,0,1",
                "--out",
                str(tmp_path / "fashion"),
            ]
        )
        != 0
    )
    assert "applies to the shapes world" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() and not (tmp_path / "fashion").exists()
