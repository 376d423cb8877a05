import pytest
import torch

from cinecube.patches import grid_positions, pack, patchify, token_grid, unpack, unpatchify


@pytest.mark.parametrize(
    "shape,patch",
    [
        ((3, 8, 16, 24), (2, 4, 4)),
        ((3, 1, 8, 8), (2, 4, 4)),  # an image: one frame, padded to the temporal patch
        ((3, 5, 12, 8), (4, 4, 4)),  # frames not a multiple of pt
        ((16, 3, 4, 6), (1, 2, 2)),
    ],
)
def test_patchify_round_trip_is_exact(shape, patch):
    latent = torch.randn(shape)
    tokens, grid = patchify(latent, patch)
    c, t, h, w = shape
    assert grid == (-(-t // patch[0]), h // patch[1], w // patch[2])
    assert tokens.shape == (grid[0] * grid[1] * grid[2], c * patch[0] * patch[1] * patch[2])
    assert torch.equal(unpatchify(tokens, grid, patch, c, t), latent)


def test_patch_holds_the_right_cube():
    latent = torch.arange(2 * 4 * 8 * 8, dtype=torch.float32).reshape(2, 4, 8, 8)
    tokens, grid = patchify(latent, (2, 4, 4))
    # token (t=1, h=0, w=1) is the cube frames 2:4, rows 0:4, cols 4:8
    index = 1 * (2 * 2) + 0 * 2 + 1
    expected = latent[:, 2:4, 0:4, 4:8].reshape(-1)
    assert torch.equal(tokens[index], expected)
    assert grid_positions(grid)[index].tolist() == [1.0, 0.0, 1.0]


def test_pack_unpack_mixed_sizes_is_exact():
    videos = [torch.randn(3, 8, 16, 16), torch.randn(3, 1, 32, 8), torch.randn(3, 3, 8, 24)]
    batch = pack(videos, (2, 4, 4))
    assert batch.tokens.shape[0] == sum(batch.lengths) == batch.segment_ids.shape[0]
    assert batch.segment_ids.tolist() == sorted(batch.segment_ids.tolist())
    assert torch.bincount(batch.segment_ids).tolist() == batch.lengths
    for original, restored in zip(videos, unpack(batch.tokens, batch)):
        assert torch.equal(original, restored)
    # positions restart at 0 for every video
    starts = [0, batch.lengths[0], batch.lengths[0] + batch.lengths[1]]
    for s in starts:
        assert batch.positions[s].tolist() == [0.0, 0.0, 0.0]


def test_off_grid_size_is_refused():
    with pytest.raises(ValueError, match="multiple of the patch"):
        token_grid((4, 10, 16), (2, 4, 4))
    with pytest.raises(ValueError, match="channels"):
        pack([torch.randn(3, 2, 8, 8), torch.randn(4, 2, 8, 8)], (2, 4, 4))
