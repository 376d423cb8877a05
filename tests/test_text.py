import torch


def test_encode_gives_per_token_embeddings_and_mask(text_encoder):
    emb, mask = text_encoder.encode(["a red circle moving right", "", "blue square"])
    assert emb.shape[0] == 3 and emb.shape[2] == 384
    assert mask.dtype == torch.bool and mask.shape == emb.shape[:2]
    assert mask[1].sum() == 2                    # the empty prompt: [CLS] and [SEP]
    assert mask[0].sum() > mask[2].sum()
    assert (emb[~mask] == 0).all()                # padding is zero
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
