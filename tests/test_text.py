import torch


def test_encode_gives_per_token_embeddings_and_mask(text_encoder):
    emb, mask = text_encoder.encode(["a red circle moving right", "", "blue square"])
    assert emb.shape[0] == 3 and emb.shape[2] == 384
    assert mask.dtype == torch.bool and mask.shape == emb.shape[:2]
    assert mask[1].sum() == 2  # the empty prompt: [CLS] and [SEP]
    assert mask[0].sum() > mask[2].sum()
    assert (emb[~mask] == 0).all()  # padding is zero
    assert emb[mask].abs().sum(-1).min() > 0


def test_cache_returns_identical_embeddings_and_words_matter(text_encoder):
    a1, _ = text_encoder.encode(["a green triangle moving left"])
    a2, _ = text_encoder.encode(["a green triangle moving left"])
    b, _ = text_encoder.encode(["a green triangle moving right"])
    assert torch.equal(a1, a2)
    assert not torch.allclose(a1, b)


def test_long_prompts_are_truncated_to_max_tokens(text_encoder):
    long_prompt = "red circle " * 100
    assert text_encoder.token_count(long_prompt) > text_encoder.max_tokens
    emb, mask = text_encoder.encode([long_prompt])
    assert mask.sum() == text_encoder.max_tokens


def test_encode_many_matches_one_by_one_and_keeps_the_order(text_encoder):
    prompts = [
        "a red circle moving right",
        "",
        "blue square",
        "red circle " * 40,
        "A small yellow triangle bouncing around on a gray background.",
        "blue square",
    ]
    many = text_encoder.encode_many(prompts, batch_size=4)
    assert len(many) == len(prompts)
    for prompt, embedding in zip(prompts, many):
        alone = text_encoder._encode_one(prompt)  # one prompt, no padding
        assert embedding.shape == alone.shape  # padding is cut off again
        torch.testing.assert_close(embedding, alone, rtol=1e-4, atol=1e-4)
    assert many[3].shape[0] == text_encoder.max_tokens  # truncated like encode
    assert torch.equal(many[2], many[5])


def test_remembered_embeddings_are_what_encode_returns(text_encoder):
    import pytest

    stored = torch.randn(5, 384)
    text_encoder.remember("a stored caption, never encoded", stored)
    embeddings, mask = text_encoder.encode(["a stored caption, never encoded", ""])
    assert torch.equal(embeddings[0, :5], stored) and mask[0].sum() == 5
    with pytest.raises(ValueError, match="does not fit"):
        text_encoder.remember("too long", torch.randn(text_encoder.max_tokens + 1, 384))
    with pytest.raises(ValueError, match="does not fit"):
        text_encoder.remember("wrong width", torch.randn(3, 100))
