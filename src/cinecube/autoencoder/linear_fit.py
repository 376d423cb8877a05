"""The closed-form fit of a causal autoencoder's linear path: PCA encoder, least-squares decoder.

With `AutoencoderConfig.linear_path`, each tf x s x s block of pixels maps linearly to its
latent cell's mean and back. Fitting that map in closed form gives the best linear code of
the training clips in under a minute; the "linear" preset is that code alone, and networks
trained on top of it start from it instead of from noise.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from .causal import CausalVideoAutoencoder
from .layers import fold_blocks


@torch.no_grad()
def fit_linear_path(model: CausalVideoAutoencoder, videos: Iterable[Tensor], ridge: float = 1e-3) -> dict[str, float]:
    """Fit the linear path in closed form on `videos` ((3, T, H, W) in [-1, 1], on the grid):

    - encoder: the principal components of the pixel blocks (PCA, the best linear code of C
      numbers per block);
    - decoder: the least-squares map from a latent cell and its 8 neighbours to the cell's
      pixel block (ridge-regularised), which removes most of the blocking of a per-block code
      (docs/autoencoder.md has what it gains over the PCA's own reconstruction);

    and quieten the networks (outputs at a tenth of their initial scale, so the linear code
    dominates and every layer still gets gradients; outputs zeroed outright sit on a saddle
    where nothing moves). Returns {"blocks": how many blocks were used, "explained": the share
    of the block variance the C components keep, "pca_mse" / "mse": the mean squared error
    (in [-1, 1] units) on these videos of the PCA's own reconstruction and of the fitted decoder}.
    """
    encoder, decoder = model.encoder, model.decoder
    if encoder.linear_path is None:
        raise ValueError("this autoencoder has no linear path (AutoencoderConfig.linear_path=False)")
    c, tf, s = model.config.latent_channels, encoder.tf, encoder.s
    folded = []
    for video in videos:
        x, _ = model._video_batch(video)
        folded.append(fold_blocks(x.float(), tf, s, True))  # (B, N, T', h, w); float64 below
    if not folded:
        raise ValueError("fit_linear_path needs at least one video")
    n = folded[0].shape[1]

    # PCA of the blocks.
    total, outer, count = torch.zeros(n, dtype=torch.float64), torch.zeros(n, n, dtype=torch.float64), 0
    for blocks in folded:
        flat = blocks.permute(0, 2, 3, 4, 1).reshape(-1, n).double()  # (cells, N)
        total += flat.sum(0)
        outer += flat.T @ flat
        count += flat.shape[0]
    mean = total / count  # (N,)
    values, vectors = torch.linalg.eigh(outer / count - torch.outer(mean, mean))  # ascending
    basis = vectors[:, values.argsort(descending=True)[:c]]  # (N, C), orthonormal
    explained = float(values.sort(descending=True).values[:c].sum() / values.sum())

    # Least squares from the 3x3 neighbourhood of latent cells (edges repeated, as the decoder
    # pads) to the centre cell's block: normal equations over cells.
    features = 9 * c + 1
    gram = torch.zeros(features, features, dtype=torch.float64)
    cross = torch.zeros(features, n, dtype=torch.float64)
    pca_error = y_square = 0.0
    for blocks in folded:
        centred = blocks.double() - mean.view(1, n, 1, 1, 1)
        z = torch.einsum("bntij,nc->bctij", centred, basis)  # (B, C, T', h, w)
        padded = F.pad(z, (1, 1, 1, 1, 0, 0), mode="replicate")
        h, w = z.shape[-2:]
        shifts = [padded[..., dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]
        f = torch.cat(shifts + [torch.ones_like(z[:, :1])], dim=1)  # (B, 9C+1, T', h, w)
        f = f.permute(0, 2, 3, 4, 1).reshape(-1, features)
        y = centred.permute(0, 2, 3, 4, 1).reshape(-1, n)
        gram += f.T @ f
        cross += f.T @ y
        pca_error += float((y - (y @ basis) @ basis.T).square().sum())
        y_square += float(y.square().sum())
    damping = ridge * float(gram.diagonal().mean())
    solution = torch.linalg.solve(gram + damping * torch.eye(features, dtype=torch.float64), cross)  # (9C+1, N)
    # Error of the fit from the normal equations: sum |y|^2 - 2 tr(W^T X^T y) + tr(W^T X^T X W).
    fit_error = y_square - 2 * float((solution * cross).sum()) + float((solution * (gram @ solution)).sum())

    dtype = encoder.linear_path.weight.dtype
    encoder.linear_path.weight.copy_(basis.T.reshape(c, n, 1, 1, 1).to(dtype))
    encoder.linear_path.bias.copy_((-basis.T @ mean).to(dtype))
    kernel = solution[:-1].view(3, 3, c, n).permute(3, 2, 0, 1)  # (N, C, 3, 3): [dy, dx] taps
    decoder.linear_path.weight.copy_(kernel.unsqueeze(2).to(dtype))  # (N, C, 1, 3, 3)
    decoder.linear_path.bias.copy_((solution[-1] + mean).to(dtype))
    if encoder.networks:
        for conv in (encoder.conv_out, decoder.conv_out):
            conv.weight.mul_(0.1)
            conv.bias.zero_()
        # A tiny posterior variance (exp(-8) ~ 3e-4) so that sampling does not drown the weaker components.
        encoder.conv_out.weight[c:].zero_()
        encoder.conv_out.bias[c:] = -8.0
    return {"blocks": count, "explained": explained, "pca_mse": pca_error / (count * n), "mse": fit_error / (count * n)}
