from cinecube.autoencoder import build_autoencoder
from cinecube.config import PRESETS
from cinecube.data.batching import SizeMix, TokenBudgetStream
from cinecube.data.shapes import ShapesWorld, WorldConfig
from cinecube.pipeline import tokens_for_size

CONFIG = PRESETS["tiny"]
AE = build_autoencoder(CONFIG.autoencoder)
MIX = SizeMix(((32, 32), (24, 40), (64, 64)), (1, 4, 8, 16))


def tokens_of(f, h, w):
    return tokens_for_size(CONFIG, AE, f, h, w)


def make_stream(**kw):
    world = ShapesWorld(WorldConfig(canvases=MIX.canvases, frame_counts=MIX.frame_counts), seed=3)
    return TokenBudgetStream(world, MIX, tokens_of, tokens_per_step=2048, max_tokens_per_video=1024, seed=3, **kw)


def test_batches_fill_the_token_budget_with_mixed_sizes():
    stream = make_stream()
    sizes, fills = set(), []
    for _ in range(20):
        batch = stream.next_batch()
        used = sum(tokens_of(*item.video.shape[:3]) for item in batch)
        assert used <= 2048
        fills.append(used / 2048)
        sizes.update(item.video.shape[:3] for item in batch)
        assert all(tokens_of(*item.video.shape[:3]) <= 1024 for item in batch)
    assert len(sizes) >= 6  # many sizes and durations in the stream
    assert sum(fills) / len(fills) > 0.75  # packing keeps steps nearly full
    # 64x64 only appears in durations that fit the per-video cap
    assert all(t * h * w <= 1024 * 32 for t, h, w in sizes)


def test_stream_is_deterministic_and_resumes_from_its_state():
    a = make_stream()
    first = [a.next_batch() for _ in range(3)]
    state = a.state_dict()
    rest = [a.next_batch() for _ in range(2)]
    b = make_stream()
    b.load_state_dict(state)
    again = [b.next_batch() for _ in range(2)]
    for x, y in zip(rest, again):
        assert [i.caption for i in x] == [i.caption for i in y]
    c = make_stream()
    assert [i.caption for i in c.next_batch()] == [i.caption for i in first[0]]
