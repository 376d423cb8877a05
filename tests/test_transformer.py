import dataclasses

import pytest
import torch

from cinecube.config import PRESETS, ModelConfig
from cinecube.patches import pack
from cinecube.transformer import DiffusionTransformer, deepened_state_dict, varlen_attention

CONFIG = PRESETS["tiny"]


def randomised_model(seed=0):
    """A tiny model with every weight random, so zero-initialised layers don't hide bugs."""
    torch.manual_seed(seed)
    model = DiffusionTransformer(CONFIG)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.08)
    return model.eval()


def run(model, videos, timesteps, text, text_mask):
    batch = pack(videos, CONFIG.patch_size)
    t = torch.tensor(timesteps)[batch.segment_ids]
    return model(batch.tokens, batch.positions, batch.segment_ids, t, text, text_mask), batch


def test_output_shape_and_zero_init():
    model = DiffusionTransformer(CONFIG)
    videos = [torch.randn(3, 4, 8, 16)]
    out, batch = run(model, videos, [0.5], torch.randn(1, 5, 384), torch.ones(1, 5, dtype=torch.bool))
    assert out.shape == batch.tokens.shape
    assert torch.count_nonzero(out) == 0  # adaLN-zero output layer


def test_packed_batch_equals_each_video_alone():
    model = randomised_model()
    videos = [torch.randn(3, 6, 16, 8), torch.randn(3, 1, 8, 8), torch.randn(3, 4, 12, 20)]
    text = torch.randn(3, 7, 384)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 2:] = False
    with torch.no_grad():
        packed, batch = run(model, videos, [0.9, 0.3, 0.6], text, mask)
        alone = []
        for i, video in enumerate(videos):
            n = int(mask[i].sum())
            out, _ = run(model, [video], [[0.9, 0.3, 0.6][i]], text[i : i + 1, :n], mask[i : i + 1, :n])
            alone.append(out)
    assert packed.abs().mean() > 0.01
    torch.testing.assert_close(packed, torch.cat(alone), atol=1e-5, rtol=1e-4)


def test_attention_stays_inside_each_video():
    model = randomised_model(1)
    a, b = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    text, mask = torch.randn(2, 5, 384), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        out1, batch = run(model, [a, b], [0.5, 0.5], text, mask)
        out2, _ = run(model, [a, torch.randn_like(b)], [0.5, 0.5], text, mask)
        text2 = text.clone()
        text2[1] = torch.randn(5, 384)
        out3, _ = run(model, [a, b], [0.5, 0.5], text2, mask)
    n = batch.lengths[0]
    torch.testing.assert_close(out1[:n], out2[:n])
    torch.testing.assert_close(out1[:n], out3[:n])  # another video's text is not seen
    assert not torch.allclose(out1[n:], out2[n:])


def test_masked_text_tokens_are_ignored_and_text_matters():
    model = randomised_model(2)
    video = [torch.randn(3, 2, 8, 8)]
    text = torch.randn(1, 6, 384)
    mask = torch.tensor([[True, True, True, False, False, False]])
    noisy_padding = text.clone()
    noisy_padding[0, 3:] = 100.0
    with torch.no_grad():
        out1, _ = run(model, video, [0.5], text, mask)
        out2, _ = run(model, video, [0.5], noisy_padding, mask)
        out3, _ = run(model, video, [0.5], torch.randn(1, 6, 384), mask)
    torch.testing.assert_close(out1, out2)
    assert not torch.allclose(out1, out3)


def test_timesteps_are_per_token():
    model = randomised_model(3)
    video = torch.randn(3, 4, 8, 8)
    batch = pack([video], CONFIG.patch_size)
    text, mask = torch.randn(1, 4, 384), torch.ones(1, 4, dtype=torch.bool)
    t = torch.full((batch.tokens.shape[0],), 0.7)
    t_first_clean = t.clone()
    t_first_clean[:4] = 0.0  # first temporal slab is a clean conditioning frame
    with torch.no_grad():
        out1 = model(batch.tokens, batch.positions, batch.segment_ids, t, text, mask)
        out2 = model(batch.tokens, batch.positions, batch.segment_ids, t_first_clean, text, mask)
    assert not torch.allclose(out1[:4], out2[:4])
    assert not torch.allclose(out1[4:], out2[4:])  # the others see the clean tokens differently


def test_rotary_positions_matter():
    model = randomised_model(4)
    batch = pack([torch.randn(3, 2, 8, 8)], CONFIG.patch_size)
    text, mask = torch.randn(1, 4, 384), torch.ones(1, 4, dtype=torch.bool)
    t = torch.full((batch.tokens.shape[0],), 0.5)
    with torch.no_grad():
        out1 = model(batch.tokens, batch.positions, batch.segment_ids, t, text, mask)
        out2 = model(batch.tokens, batch.positions.flip(0), batch.segment_ids, t, text, mask)
    assert not torch.allclose(out1, out2)


def test_varlen_attention_matches_dense_masked_attention():
    torch.manual_seed(0)
    q, k, v = torch.randn(9, 2, 8), torch.randn(9, 2, 8), torch.randn(9, 2, 8)
    lengths = [4, 2, 3]
    out = varlen_attention(q, k, v, lengths, lengths)
    seg = torch.repeat_interleave(torch.arange(3), torch.tensor(lengths))
    allowed = seg[:, None] == seg[None, :]
    dense = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=allowed
    ).transpose(0, 1)
    torch.testing.assert_close(out, dense)


def test_cpu_training_attention_matches_the_fused_kernel_in_values_and_gradients():
    # With gradients on, CPU attention runs as plain matmuls (faster backward); without, the
    # fused kernel. Both must give the same outputs and the same gradients.
    torch.manual_seed(0)
    lengths, text_lengths = [5, 3, 5, 7], [4, 4, 2, 6]
    q, k, v = (torch.randn(20, 2, 8, requires_grad=True) for _ in range(3))
    kt, vt = (torch.randn(16, 2, 8, requires_grad=True) for _ in range(2))
    with torch.no_grad():
        fused_self = varlen_attention(q, k, v, lengths, lengths)
        fused_cross = varlen_attention(q, kt, vt, lengths, text_lengths)
    out_self = varlen_attention(q, k, v, lengths, lengths)
    out_cross = varlen_attention(q, kt, vt, lengths, text_lengths)
    torch.testing.assert_close(out_self, fused_self)
    torch.testing.assert_close(out_cross, fused_cross)
    (out_self.square().sum() + out_cross.sum()).backward()
    grads = [t.grad.clone() for t in (q, k, v, kt, vt)]
    for t in (q, k, v, kt, vt):
        t.grad = None
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import cinecube.transformer as transformer_module

    reference = transformer_module._attend_by_matmul
    try:  # the same computation through scaled_dot_product_attention's own backward
        transformer_module._attend_by_matmul = torch.nn.functional.scaled_dot_product_attention
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            (
                varlen_attention(q, k, v, lengths, lengths).square().sum()
                + varlen_attention(q, kt, vt, lengths, text_lengths).sum()
            ).backward()
    finally:
        transformer_module._attend_by_matmul = reference
    for mine, theirs in zip(grads, (t.grad for t in (q, k, v, kt, vt))):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


def test_qk_norm_under_bf16_autocast_matches_the_module():
    from cinecube.transformer import rms_norm

    norm = torch.nn.RMSNorm(8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(6, 2, 8)
    torch.testing.assert_close(rms_norm(norm, x), norm(x), rtol=0, atol=0)
    half = rms_norm(norm, x.bfloat16())
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), norm(x), rtol=2e-2, atol=2e-2)


def test_bad_inputs_are_refused():
    model = randomised_model()
    batch = pack([torch.randn(3, 2, 8, 8)], CONFIG.patch_size)
    t = torch.full((batch.tokens.shape[0],), 0.5)
    with pytest.raises(ValueError, match="segment_ids"):
        model(
            batch.tokens,
            batch.positions,
            batch.segment_ids,
            t,
            torch.randn(2, 3, 384),
            torch.ones(2, 3, dtype=torch.bool),
        )
    with pytest.raises(ValueError, match="text token"):
        model(
            batch.tokens,
            batch.positions,
            batch.segment_ids,
            t,
            torch.randn(1, 3, 384),
            torch.zeros(1, 3, dtype=torch.bool),
        )


def test_config_round_trip_and_validation():
    for config in PRESETS.values():
        assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError):
        dataclasses.replace(CONFIG.transformer, width=65)
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({**CONFIG.to_dict(), "colour": 1})


def test_a_deepened_model_computes_what_the_shallower_one_did_and_then_learns():
    source = randomised_model(3)
    depth = CONFIG.transformer.depth
    deeper_config = dataclasses.replace(CONFIG, transformer=dataclasses.replace(CONFIG.transformer, depth=depth + 3))
    deeper = DiffusionTransformer(deeper_config)
    deeper.load_state_dict(deepened_state_dict(source.state_dict(), depth, depth + 3))
    videos = [torch.randn(3, 4, 8, 12), torch.randn(3, 1, 8, 8)]
    text, mask = torch.randn(2, 6, 384), torch.ones(2, 6, dtype=torch.bool)
    with torch.no_grad():
        before, _ = run(source, videos, [0.7, 0.2], text, mask)
    after, _ = run(deeper, videos, [0.7, 0.2], text, mask)
    assert before.abs().mean() > 0.01
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)
    # The new blocks are not dead: their zeroed modulation and cross-attention output get gradients.
    after.square().mean().backward()
    new_blocks = [i for i in range(depth + 3) if torch.count_nonzero(deeper.blocks[i].modulation[1].weight) == 0]
    assert len(new_blocks) == 3
    for i in new_blocks:
        assert deeper.blocks[i].modulation[1].weight.grad.abs().sum() > 0
        assert deeper.blocks[i].cross.out.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at least 4"):
        deepened_state_dict(source.state_dict(), depth + 2, depth)


def test_a_refined_model_sees_coarse_videos_as_its_source_did():
    from cinecube.patches import unpack
    from cinecube.transformer import refined_model_config, refined_state_dict

    source = randomised_model(5)
    coarse_patch, fine_patch = CONFIG.patch_size, (1, 1, 1)  # tiny's cubes are 2x4x4 cells
    fine_config = refined_model_config(dataclasses.replace(CONFIG, patch_size=fine_patch), CONFIG)
    assert fine_config.transformer.rope_scale == (0.5, 0.25, 0.25)
    assert fine_config.diffusion.shift_base_tokens == CONFIG.diffusion.shift_base_tokens * 32
    refined = DiffusionTransformer(fine_config).eval()
    refined.load_state_dict(refined_state_dict(source.state_dict(), coarse_patch, fine_patch, 3))
    # Videos constant inside each coarse cube look the same to both models (but for the rotary
    # offsets of the sub-cubes), so the refined model starts near the source's predictions.
    torch.manual_seed(0)
    coarse = [torch.randn(3, 2, 2, 3), torch.randn(3, 1, 3, 2)]
    videos = [v.repeat_interleave(2, 1).repeat_interleave(4, 2).repeat_interleave(4, 3) for v in coarse]
    text, mask = torch.randn(2, 6, 384), torch.ones(2, 6, dtype=torch.bool)

    def predict(model, patch):
        batch = pack(videos, patch)
        t = torch.tensor([0.7, 0.3])[batch.segment_ids]
        with torch.no_grad():
            out = model(batch.tokens, batch.positions, batch.segment_ids, t, text, mask)
        return unpack(out, batch)

    def cube_means(video):  # (C, T, H, W) -> each coarse cube's mean, spread over the cube
        c, t, h, w = video.shape
        cubes = video.reshape(c, t // 2, 2, h // 4, 4, w // 4, 4).mean(dim=(2, 4, 6), keepdim=True)
        return cubes.expand(-1, -1, 2, -1, 4, -1, 4).reshape(video.shape)

    # A fine token can only give its coarse cube's mean of what the source predicts there.
    expected = torch.cat([cube_means(v).flatten() for v in predict(source, coarse_patch)])

    def relative_error(model):
        return (
            (torch.cat([v.flatten() for v in predict(model, fine_patch)]) - expected).norm() / expected.norm()
        ).item()

    # The same body with new random first and last layers carries nothing over.
    scratch = DiffusionTransformer(fine_config).eval()
    scratch.load_state_dict(refined.state_dict())
    with torch.no_grad():
        for layer in (scratch.token_in, scratch.final.linear):
            layer.weight.normal_(0, 0.08)
            layer.bias.normal_(0, 0.08)
    assert expected.abs().mean() > 0.01
    error, scratch_error = relative_error(refined), relative_error(scratch)
    assert error < 0.01 and scratch_error > 0.5, (error, scratch_error)
    with pytest.raises(ValueError, match="divide"):
        refined_state_dict(source.state_dict(), coarse_patch, (1, 3, 4), 3)
