"""Invisible, keyed watermark carried by every frame cinecube writes.

What is embedded: a 48-bit payload (16-bit model id, 24-bit generation id, 8-bit CRC),
protected by a rate-1/2 convolutional code, plus a payload-independent sync signal that
gives detection its p-value.

Where: a 32x32-pixel tile is added to the luma of every frame, repeated across the frame
(so any frame size works, a 32x32 image included, and a crop only shifts the tile). The
tile lives in a band of its 2-D spectrum: at most 7 cycles per tile on either axis (periods
down to 4.6 pixels) and at least 2 on one of them: low enough to survive H.264 and a 0.5x
resize, clear of the slowest variations of the picture. Each of the band's 108
frequency bins holds two real "chips"; a keyed permutation gives 40 bins to the sync and 68
to the coded payload, and keyed random signs scramble every chip. The same change goes to
R, G and B, so only luma moves, and the PSNR of the embedding is TARGET_PSNR_DB (the output
gate lowers it step by step for a clip whose payload a lossy file format would lose:
safety/guard.py reads every file back before it publishes it).

Two ways of embedding, chosen per clip:
- spread spectrum (videos, large images): the tile is added, its amplitude following the
  texture of each frame; what the picture itself puts into the band, averaged the way the
  detector averages, is partly cancelled. Survives H.264, resizing, brightness, crops.
- quantization (dither modulation), when the picture would drown spread spectrum (one
  small still image, or a short small clip of real footage): the tile-average of the luma
  is moved so each chip lands on the lattice of the bit it carries. The picture cannot
  interfere; detection searches gains, so brightness changes are fine, but a resize or a
  crop breaks it and strong H.264 often does.

Detection folds all frames onto one tile (the average of every tile copy; dropped frames
only lower the evidence), takes its spectrum, keeps the phase of each bin and correlates
with the sync at all 1024 cyclic offsets with one FFT, for the frames as they are and
resized back from a few scales; the payload is read at the best offset by soft Viterbi.

The p-value holds for any content, over the key's randomness: at one offset the sync
statistic is a sum of terms scrambled by independent random signs, so P(z >= t) <=
exp(-t^2 / 2) (Chernoff; every term is sub-Gaussian with the variance it contributes);
quantization mode's sync count is exactly Binomial(80, 1/2). Offsets, scales, gains and
modes are paid for by a weighted Bonferroni correction; a matching CRC multiplies it by
2^-8 (the payload chips' signs are independent of the sync's and the code is linear, so a
decoded payload from unmarked content is uniform). Detected = p < P_THRESHOLD and the CRC
matches. benchmarks/watermark_robustness.py checks all this on clean clips.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass

import numpy as np

TILE = 32  # pattern period in pixels
BAND = 7  # highest frequency, cycles per tile on each axis (a 0.5x resize keeps < 8)
MODEL_ID_BITS = 16
GENERATION_ID_BITS = 24
CRC_BITS = 8
PAYLOAD_BITS = MODEL_ID_BITS + GENERATION_ID_BITS + CRC_BITS  # 48
SYNC_BINS = 40  # of the band's 108 bins; the other 68 (136 real chips) carry the payload
TARGET_PSNR_DB = 40.0  # PSNR of the embedding (luma change only)
MASK_POWER = 0.5  # texture shaping is softened: H.264 erases a faint signal in flat areas
HOST_CANCEL_SHARE = 0.5  # at most this share of the embedding's energy cancels the host
P_THRESHOLD = 1e-5  # detected when p < this and the CRC matches: at most 1e-5 false positives
# Spread spectrum is used when, before any distortion, its sync reaches this z-score and its
# payload decodes; otherwise the picture dominates the band and quantization mode is used.
SPREAD_MIN_Z = 7.0
# Gains searched in quantization mode (a brightness change scales its lattice): x0.7 to x1.35.
QUANTIZED_GAINS = 1.02 ** np.arange(-18, 16)
# Scales tried when detecting, besides 1: a frame resized by s has its tile resized by s.
SEARCH_SCALES = (0.5, 0.75, 1 / 0.9)

# Smallest frame the mark is reliable on: one whole tile. At 24x32 and 20x32 a shapes clip
# lost the payload in half the trials even without compression; at 16x24 it always did.
MIN_SIDE = TILE

# The project's public key: anyone can verify cinecube's videos with it.
DEFAULT_KEY = b"cinecube/watermark/v1"

# Rate-1/2, constraint-length-7 convolutional code (the NASA/Voyager generators).
_CODE_K = 7
_CODE_GENERATORS = (0o133, 0o171)
CODED_BITS = (PAYLOAD_BITS + _CODE_K - 1) * len(_CODE_GENERATORS)  # 108


# --------------------------------------------------------------------------------------------
# Payload
# --------------------------------------------------------------------------------------------


def _crc8(bits: np.ndarray) -> int:
    """CRC-8 (polynomial x^8 + x^2 + x + 1) of a bit sequence, most significant bit first."""
    crc = 0
    for bit in bits:
        crc ^= int(bit) << 7
        crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _int_bits(value: int, width: int) -> np.ndarray:
    return np.array([(value >> (width - 1 - i)) & 1 for i in range(width)], dtype=np.uint8)


def _bits_int(bits: np.ndarray) -> int:
    return int("".join(str(int(b)) for b in bits), 2) if len(bits) else 0


@dataclass(frozen=True)
class WatermarkPayload:
    """What a watermark says: which model made the video, and which generation it was."""

    model_id: int  # 16 bits, from the checkpoint's SHA-256 (see payload_for)
    generation_id: int  # 24 bits

    def __post_init__(self) -> None:
        if not 0 <= self.model_id < 2 ** MODEL_ID_BITS:
            raise ValueError(f"model_id must be in [0, {2 ** MODEL_ID_BITS}), got {self.model_id}")
        if not 0 <= self.generation_id < 2 ** GENERATION_ID_BITS:
            raise ValueError(f"generation_id must be in [0, {2 ** GENERATION_ID_BITS}), got {self.generation_id}")

    def to_bits(self) -> np.ndarray:
        """(48,) uint8: model id, generation id, then the CRC-8 of those 40 bits."""
        data = np.concatenate([_int_bits(self.model_id, MODEL_ID_BITS),
                               _int_bits(self.generation_id, GENERATION_ID_BITS)])
        return np.concatenate([data, _int_bits(_crc8(data), CRC_BITS)])

    @classmethod
    def from_bits(cls, bits: np.ndarray) -> "WatermarkPayload":
        """Inverse of to_bits(); raises ValueError when the length or the CRC is wrong."""
        bits = np.asarray(bits).astype(np.uint8).reshape(-1)
        if bits.size != PAYLOAD_BITS:
            raise ValueError(f"a payload has {PAYLOAD_BITS} bits, got {bits.size}")
        data, crc = bits[:-CRC_BITS], _bits_int(bits[-CRC_BITS:])
        if _crc8(data) != crc:
            raise ValueError("payload check code (CRC-8) does not match")
        return cls(_bits_int(data[:MODEL_ID_BITS]), _bits_int(data[MODEL_ID_BITS:]))

    def as_hex(self) -> str:
        """'mmmm-gggggg': model id (4 hex digits) and generation id (6 hex digits)."""
        return f"{self.model_id:04x}-{self.generation_id:06x}"


def payload_for(model_sha256: str, generation_id: int) -> WatermarkPayload:
    """The payload for a video: model id = first 16 bits of the checkpoint's SHA-256 (hex),
    generation id = the low 24 bits of ``generation_id``."""
    digest = model_sha256.strip().lower()
    if len(digest) < 4 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"model_sha256 must be a hex digest, got {model_sha256!r}")
    if generation_id < 0:
        raise ValueError(f"generation_id must be >= 0, got {generation_id}")
    return WatermarkPayload(int(digest[:4], 16), generation_id % 2 ** GENERATION_ID_BITS)


# --------------------------------------------------------------------------------------------
# Convolutional code with soft Viterbi decoding
# --------------------------------------------------------------------------------------------


def _parity(x: int) -> int:
    return bin(x).count("1") & 1


@functools.lru_cache(maxsize=1)
def _trellis() -> tuple[np.ndarray, np.ndarray]:
    """For each next state n and the predecessor choice x in {0, 1}: the previous state
    (64, 2) and the two output symbols +-1 of that branch (64, 2, 2)."""
    n_states = 2 ** (_CODE_K - 1)
    prev = np.zeros((n_states, 2), dtype=np.int64)
    symbols = np.zeros((n_states, 2, len(_CODE_GENERATORS)))
    for n in range(n_states):
        bit = n >> (_CODE_K - 2)  # the input bit that led into n is its top bit
        for x in range(2):
            s = ((n << 1) & (n_states - 1)) | x
            reg = (bit << (_CODE_K - 1)) | s
            prev[n, x] = s
            symbols[n, x] = [1 - 2 * _parity(reg & g) for g in _CODE_GENERATORS]
    return prev, symbols


def _conv_encode(bits: np.ndarray) -> np.ndarray:
    """(n,) bits -> (2 (n + 6),) bits, zero-terminated."""
    state, out = 0, []
    for bit in list(bits) + [0] * (_CODE_K - 1):
        reg = (int(bit) << (_CODE_K - 1)) | state
        out.extend(_parity(reg & g) for g in _CODE_GENERATORS)
        state = reg >> 1
    return np.array(out, dtype=np.uint8)


def _viterbi(soft: np.ndarray) -> np.ndarray:
    """Soft values (2 (n + 6),), positive meaning bit 0 -> the (n,) most likely input bits."""
    prev, symbols = _trellis()
    steps = soft.size // len(_CODE_GENERATORS)
    soft = soft.reshape(steps, len(_CODE_GENERATORS))
    metric = np.full(prev.shape[0], -np.inf)
    metric[0] = 0.0
    choices = np.zeros((steps, prev.shape[0]), dtype=np.int8)
    for t in range(steps):
        candidates = metric[prev] + symbols @ soft[t]  # (64, 2)
        choices[t] = np.argmax(candidates, axis=1)
        metric = candidates[np.arange(prev.shape[0]), choices[t]]
    state, bits = 0, []  # terminated: the path ends in state 0
    for t in range(steps - 1, -1, -1):
        bits.append(state >> (_CODE_K - 2))
        state = prev[state, choices[t, state]]
    return np.array(bits[::-1][: steps - (_CODE_K - 1)], dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# Keyed layout of the band
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    u: np.ndarray  # (108,) row frequency of each bin, cycles per tile (may be negative)
    v: np.ndarray  # (108,) column frequency, >= 0
    sync: np.ndarray  # (108,) bool: bin carries the sync
    signs: np.ndarray  # (108, 2) +-1 keyed scrambling of the real and imaginary chip
    coded_index: np.ndarray  # (108, 2) which coded bit a payload chip carries (-1 for sync)


def _key_stream(key: bytes, label: bytes, n: int) -> np.ndarray:
    """n pseudo-random uint32 derived from the key (SHAKE-256, stable on every platform)."""
    raw = hashlib.shake_256(b"cinecube-watermark\0" + label + b"\0" + key).digest(4 * n)
    return np.frombuffer(raw, dtype="<u4").astype(np.int64)


def _band_bins() -> tuple[np.ndarray, np.ndarray]:
    """The half-plane bins with max(|u|, |v|) <= BAND, without the four lowest (too close to
    the picture's own content) and without DC."""
    bins = [(u, v) for v in range(0, BAND + 1) for u in range(-BAND, BAND + 1)
            if (v > 0 or u > 0) and max(abs(u), abs(v)) > 1]
    return np.array([b[0] for b in bins]), np.array([b[1] for b in bins])


@functools.lru_cache(maxsize=8)
def _layout(key: bytes) -> _Layout:
    u, v = _band_bins()
    n = u.size
    order = np.argsort(_key_stream(key, b"bins", n), kind="stable")
    sync = np.zeros(n, dtype=bool)
    sync[order[:SYNC_BINS]] = True
    signs = 1 - 2 * (_key_stream(key, b"signs", 2 * n) & 1).reshape(n, 2)
    coded_index = np.full((n, 2), -1, dtype=np.int64)
    payload_chips = np.stack(np.nonzero(~sync[:, None].repeat(2, axis=1)), axis=1)  # (136, 2)
    chip_order = np.argsort(_key_stream(key, b"chips", len(payload_chips)), kind="stable")
    for rank, chip in enumerate(payload_chips[chip_order]):
        coded_index[chip[0], chip[1]] = rank % CODED_BITS  # every coded bit gets >= 1 chip
    return _Layout(u, v, sync, signs.astype(np.float64), coded_index)


def _chip_data(lay: _Layout, payload: WatermarkPayload) -> np.ndarray:
    """(108, 2) +-1: what every real chip carries (+1 for sync, the coded bit otherwise)."""
    coded = 1.0 - 2.0 * _conv_encode(payload.to_bits())  # (108,) +-1, bit 0 -> +1
    return np.where(lay.coded_index >= 0, coded[np.maximum(lay.coded_index, 0)], 1.0)


def _to_tile(chips: np.ndarray, lay: _Layout) -> np.ndarray:
    """(108, 2) real and imaginary parts of the band bins -> the real (TILE, TILE) tile."""
    spectrum = np.zeros((TILE, TILE), dtype=np.complex128)
    spectrum[lay.u % TILE, lay.v % TILE] = chips[:, 0] + 1j * chips[:, 1]
    spectrum[-lay.u % TILE, -lay.v % TILE] = chips[:, 0] - 1j * chips[:, 1]
    return np.fft.ifft2(spectrum).real


def _band_chips(tile: np.ndarray, lay: _Layout) -> np.ndarray:
    """(TILE, TILE) -> (108, 2) real and imaginary parts of its band bins (inverse of _to_tile)."""
    spectrum = np.fft.fft2(tile)[lay.u % TILE, lay.v % TILE]
    return np.stack([spectrum.real, spectrum.imag], axis=1)


@functools.lru_cache(maxsize=64)
def _tile(key: bytes, payload: WatermarkPayload) -> np.ndarray:
    """The (TILE, TILE) spread-spectrum pattern with unit RMS for this key and payload."""
    lay = _layout(key)
    tile = _to_tile(lay.signs * _chip_data(lay, payload), lay)
    return tile / np.sqrt(np.mean(tile ** 2))


# --------------------------------------------------------------------------------------------
# Embedding
# --------------------------------------------------------------------------------------------

_LUMA = np.array([0.299, 0.587, 0.114])


def _luma(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, H, W) float32 luma."""
    return (frames.astype(np.float32) @ _LUMA.astype(np.float32))


def _texture_mask(luma: np.ndarray) -> np.ndarray:
    """(T, H, W) -> (T, H, W) relative amplitude: ~1 in flat areas, up to 3x where busy.

    Busy = mean absolute deviation from a 3x3 average, pooled over 5x5 pixels.
    """
    from scipy.ndimage import uniform_filter

    detail = np.abs(luma - uniform_filter(luma, size=(1, 3, 3), mode="reflect"))
    activity = uniform_filter(detail, size=(1, 5, 5), mode="reflect")
    return np.clip((activity + 2.0) / (float(activity.mean()) + 2.0), 0.5, 3.0) ** MASK_POWER


def _target_mse(psnr_db: float = TARGET_PSNR_DB) -> float:
    return 255.0 ** 2 * 10 ** (-psnr_db / 10)


def _band_part(tile: np.ndarray) -> np.ndarray:
    """The part of a (TILE, TILE) tile that lies in the watermark's band (both half-planes)."""
    u, v = _band_bins()
    spectrum = np.fft.fft2(tile)
    keep = np.zeros((TILE, TILE), dtype=bool)
    keep[u % TILE, v % TILE] = True
    keep[-u % TILE, -v % TILE] = True
    return np.fft.ifft2(np.where(keep, spectrum, 0)).real


def _embed_spread(arr: np.ndarray, payload: WatermarkPayload, key: bytes, psnr_db: float) -> np.ndarray:
    """Spread-spectrum mode: the keyed tile, shaped by texture, plus partial host cancelling.
    Detection reads only the phase of each bin, so any amplitude (``psnr_db``) is detected alike."""
    t, h, w, _ = arr.shape
    reps = (-(-h // TILE), -(-w // TILE))
    luma = _luma(arr)
    target_mse = _target_mse(psnr_db)
    # Informed embedding: what the picture itself puts into the band, averaged the way the
    # detector averages, is partly cancelled so that it drowns the pattern less. For a long
    # or large clip this average is tiny and is cancelled fully.
    cancel = -_band_part(_fold(luma))  # (TILE, TILE)
    cancel_mse = float(np.mean(cancel ** 2))
    cancel *= min(1.0, math.sqrt(HOST_CANCEL_SHARE * target_mse / max(cancel_mse, 1e-12)))
    cancel_mse = float(np.mean(cancel ** 2))
    pattern = np.tile(_tile(key, payload), reps)[:h, :w].astype(np.float32)  # (H, W)
    delta = _texture_mask(luma) * pattern  # (T, H, W)
    delta *= np.float32(math.sqrt((target_mse - cancel_mse) / max(float(np.mean(delta ** 2)), 1e-12)))
    delta += np.tile(cancel, reps)[:h, :w].astype(np.float32)
    return np.clip(np.rint(arr.astype(np.float32) + delta[..., None]), 0, 255).astype(np.uint8)


def _qim_step() -> float:
    """Quantizer step, in orthonormal chip units, that spends the embedding's MSE budget
    (a uniform quantization error of step^2 / 12 in each of the 216 chips of a tile)."""
    return math.sqrt(12.0 * TILE * TILE * _target_mse() / (2 * _layout(DEFAULT_KEY).u.size))


def _qim_offsets(lay: _Layout, data: np.ndarray, key: bytes) -> np.ndarray:
    """(108, 2) lattice offset of every chip, in steps: keyed dither, plus half a step for a 1."""
    dither = (_key_stream(key, b"dither", data.size) / 2.0 ** 32).reshape(data.shape)
    return dither + (data < 0) * 0.5


def _embed_quantized(arr: np.ndarray, payload: WatermarkPayload, key: bytes) -> np.ndarray:
    """Quantization mode (dither modulation): the tile-average of the luma is moved so each
    chip lands on the lattice of the value it carries. The picture cannot interfere with
    this, which is what one small still image needs; it is less robust than spread spectrum
    (a resize or crop moves the chips off the lattice)."""
    t, h, w, _ = arr.shape
    reps = (-(-h // TILE), -(-w // TILE))
    lay = _layout(key)
    offsets = _qim_offsets(lay, _chip_data(lay, payload), key)
    step = _qim_step()
    unit = math.sqrt(2.0 / (TILE * TILE))  # raw DFT part -> orthonormal chip coordinate
    out = arr
    for _ in range(3):  # clipping and rounding move a few chips off the lattice: correct again
        coords = _band_chips(_fold(_luma(out)), lay) * unit / step  # (108, 2), in steps
        error = coords - offsets
        correction = (np.rint(error) - error) * step / unit
        tile = _to_tile(correction, lay).astype(np.float32)
        delta = np.tile(tile, reps)[:h, :w]
        out = np.clip(np.rint(out.astype(np.float32) + delta[None, ..., None]), 0, 255).astype(np.uint8)
    return out


def embed_watermark(frames: np.ndarray, payload: WatermarkPayload, key: bytes | None = None,
                    psnr_db: float = TARGET_PSNR_DB) -> np.ndarray:
    """Add the watermark for ``payload`` to every frame: (T, H, W, 3) uint8 -> same shape.

    A single image may be passed as (H, W, 3). Spread spectrum is used (the same keyed
    tile in every frame, shaped by texture) unless the picture's own content would drown
    it (typically one small still image); then quantization mode is used. Spread spectrum
    is embedded at ``psnr_db`` (a lower PSNR is a stronger mark: the output gate lowers it
    when a lossy file format would otherwise lose the payload); quantization mode always
    uses the lattice step of TARGET_PSNR_DB, which its detector assumes.
    """
    if not 20.0 <= psnr_db <= 60.0:
        raise ValueError(f"psnr_db must be in [20, 60] dB, got {psnr_db}")
    arr = np.asarray(frames)
    single = arr.ndim == 3
    if single:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {arr.dtype} {tuple(arr.shape)}")
    key = key or DEFAULT_KEY
    out = _embed_spread(arr, payload, key, psnr_db)
    lay = _layout(key)
    whitened, scores = _sync_scores(_fold(_luma(out)), lay)
    bits, _ = _decode(_spread_chips(whitened, (0, 0), lay), lay)
    if scores[0, 0] < SPREAD_MIN_Z or not np.array_equal(bits, payload.to_bits()):
        out = _embed_quantized(arr, payload, key)
    return out[0] if single else out


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatermarkDetection:
    """The outcome of detect_watermark()."""

    detected: bool  # p_value < P_THRESHOLD and the CRC of the decoded payload matches
    payload: WatermarkPayload | None  # the decoded payload when its CRC matches, else None
    p_value: float  # chance of evidence this strong (sync, and CRC if it matched) in unmarked content
    bit_accuracy: float  # share of payload chips agreeing with the decoded codeword (~0.5-0.75 if unmarked)
    frames_used: int
    z_score: float  # spread-spectrum sync correlation, standard deviations, at the best offset/scale
    offset: tuple[int, int]  # (rows, columns) the tile was found shifted by
    scale: float  # frame size relative to the embedded one
    mode: str  # "spread" or "quantized": the evidence the p-value comes from
    bits: np.ndarray  # (48,) the decoded bits, CRC or not


def _fold(luma: np.ndarray) -> np.ndarray:
    """(T, H, W) or (H, W) -> (TILE, TILE): the mean of all tile copies of all frames, per
    tile pixel (partial tiles at the right and bottom edges count where they have pixels)."""
    frames = luma.shape[0] if luma.ndim == 3 else 1
    plane = luma.sum(axis=0, dtype=np.float64) if luma.ndim == 3 else luma.astype(np.float64)
    h, w = plane.shape
    ph, pw = -(-h // TILE) * TILE, -(-w // TILE) * TILE
    padded = np.zeros((ph, pw))
    padded[:h, :w] = plane
    total = padded.reshape(ph // TILE, TILE, pw // TILE, TILE).sum(axis=(0, 2))
    count = np.zeros((ph, pw))
    count[:h, :w] = frames
    count = count.reshape(ph // TILE, TILE, pw // TILE, TILE).sum(axis=(0, 2))
    return total / np.maximum(count, 1)


def _sync_scores(folded: np.ndarray, lay: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """Whitened band spectrum (108,) and the sync z-score for every cyclic offset (TILE, TILE)."""
    spectrum = np.fft.fft2(folded)[lay.u % TILE, lay.v % TILE]
    whitened = spectrum / np.maximum(np.abs(spectrum), 1e-9)  # phase only: each bin weighs 1
    weights = np.zeros((TILE, TILE), dtype=np.complex128)
    sel = lay.sync
    # Re(g X) = sign_re Re X + sign_im Im X with g = sign_re - i sign_im
    g = lay.signs[sel, 0] - 1j * lay.signs[sel, 1]
    weights[lay.u[sel] % TILE, lay.v[sel] % TILE] = g * whitened[sel]
    # numpy's fft2 sums X e^{-2 pi i (u dy + v dx) / TILE}: it undoes a shift of (dy, dx)
    scores = np.fft.fft2(weights).real / math.sqrt(sel.sum())
    return whitened, scores


def _decode(soft_chips: np.ndarray, lay: _Layout) -> tuple[np.ndarray, float]:
    """(108, 2) soft chip values (positive = +1) -> 48 decoded bits and chip agreement."""
    used = lay.coded_index >= 0
    soft = np.bincount(lay.coded_index[used], weights=soft_chips[used], minlength=CODED_BITS)
    bits = _viterbi(soft)
    recoded = 1.0 - 2.0 * _conv_encode(bits)
    agreement = float(np.mean(np.sign(soft_chips[used]) == recoded[lay.coded_index[used]]))
    return bits, agreement


def _spread_chips(whitened: np.ndarray, offset: tuple[int, int], lay: _Layout) -> np.ndarray:
    """Descrambled spread-spectrum chips (108, 2) with the tile shifted back by ``offset``."""
    dy, dx = offset
    aligned = whitened * np.exp(-2j * np.pi * (lay.u * dy + lay.v * dx) / TILE)
    return np.stack([aligned.real, aligned.imag], axis=1) * lay.signs


def _quantized_search(folded: np.ndarray, lay: _Layout, key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Quantization mode at offset 0 for every gain of QUANTIZED_GAINS.

    Returns the number of sync chips on their lattice for each gain, (gains,), and the chip
    coordinates in steps, (108, 2). A chip lands on its lattice with probability 1/2 in
    unmarked content whatever the gain (the dither is uniform over the key). Offsets are not
    searched: a crop changes which pixels each tile position averages, which moves the
    coordinates by far more than a step.
    """
    coords = _band_chips(folded, lay) * (math.sqrt(2.0 / (TILE * TILE)) / _qim_step())  # (108, 2)
    sync_offsets = _qim_offsets(lay, np.ones((lay.u.size, 2)), key)[lay.sync]  # (40, 2)
    e = coords[None, lay.sync] / QUANTIZED_GAINS[:, None, None] - sync_offsets  # (gains, 40, 2)
    return (np.abs(e - np.rint(e)) < 0.25).sum(axis=(1, 2)), coords


def _quantized_soft(coords: np.ndarray, gain: float, lay: _Layout, key: bytes) -> np.ndarray:
    """Soft chips (108, 2) from coordinates in steps: +0.25 on the lattice of +1, -0.25 on that of -1."""
    e = coords / gain - _qim_offsets(lay, np.ones_like(coords), key)
    return 0.25 - np.abs(e - np.rint(e))


def _binomial_tail(n: int, k: int) -> float:
    """P(Binomial(n, 1/2) >= k)."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2.0 ** n


def _resized_luma(luma: np.ndarray, scale: float) -> np.ndarray:
    """Resize (T, H, W) luma by 1/scale, undoing a resize by ``scale`` (bilinear, torch)."""
    import torch

    t, h, w = luma.shape
    size = (max(1, round(h / scale)), max(1, round(w / scale)))
    x = torch.from_numpy(np.ascontiguousarray(luma, dtype=np.float32))[:, None]
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False,
                                           antialias=scale > 1)[:, 0].numpy()


def _tail(z: float) -> float:
    """Chernoff bound on P(Z >= z) for a sum of sub-Gaussian terms with unit variance proxy."""
    return 1.0 if z <= 0 else math.exp(-0.5 * z * z)


# Shares of the p-value's test budget (weighted Bonferroni): the unshifted spread-spectrum
# sync, its search over all offsets and scales, quantization mode's sync as embedded, and
# its search over gains.
_BUDGET_UNSHIFTED, _BUDGET_SEARCH, _BUDGET_QUANTIZED, _BUDGET_QUANTIZED_SEARCH = 0.4, 0.4, 0.1, 0.1


def _folds(frames: np.ndarray, search_scales: bool = True) -> dict[float, np.ndarray]:
    """The folded luma tile (TILE, TILE) of the frames as they are (scale 1) and, when
    ``search_scales``, resized back from each of SEARCH_SCALES (frames too small skipped)."""
    # folding and resizing are linear: resize the clip's mean frame instead of every frame
    luma = _luma(frames).mean(axis=0, dtype=np.float64)[None]  # (1, H, W)
    folds = {1.0: _fold(luma)}
    for scale in SEARCH_SCALES if search_scales else ():
        source = _resized_luma(luma, scale)
        if min(source.shape[1:]) >= TILE // 2:
            folds[scale] = _fold(source)
    return folds


def _detect_folded(folds: dict[float, np.ndarray], key: bytes, frames_used: int) -> WatermarkDetection:
    """detect_watermark() once the frames are folded (the p-value pays for every scale
    SEARCH_SCALES has, searched or not, so it does not depend on the frame size)."""
    lay = _layout(key)
    n_search = (1 + len(SEARCH_SCALES)) * TILE * TILE  # every (scale, offset) pair
    # quantization mode at scale 1 and offset 0: as embedded (gain 1) and searched over
    # gains (a brightness change)
    on_lattice, coords = _quantized_search(folds[1.0], lay, key)
    n_sync = 2 * int(lay.sync.sum())
    g1 = int(np.argmin(np.abs(QUANTIZED_GAINS - 1.0)))
    best = (_binomial_tail(n_sync, int(on_lattice[g1])) / _BUDGET_QUANTIZED, 1.0, (0, 0), "quantized",
            _quantized_soft(coords, 1.0, lay, key))
    g = int(np.argmax(on_lattice))
    p_q = _binomial_tail(n_sync, int(on_lattice[g])) * on_lattice.size / _BUDGET_QUANTIZED_SEARCH
    if p_q < best[0]:
        best = (p_q, 1.0, (0, 0), "quantized", _quantized_soft(coords, float(QUANTIZED_GAINS[g]), lay, key))
    z_unshifted = 0.0
    for scale, folded in folds.items():
        whitened, scores = _sync_scores(folded, lay)
        flat = int(np.argmax(scores))
        candidates = [(_tail(float(scores.flat[flat])) * n_search / _BUDGET_SEARCH, (flat // TILE, flat % TILE))]
        if scale == 1.0:
            z_unshifted = float(scores[0, 0])
            candidates.append((_tail(z_unshifted) / _BUDGET_UNSHIFTED, (0, 0)))
        for p, offset in candidates:
            if p < best[0]:
                best = (p, scale, offset, "spread", _spread_chips(whitened, offset, lay))
                z_best = float(scores[offset])
    p, scale, offset, mode, chips = best
    bits, agreement = _decode(chips, lay)
    data, crc = bits[:-CRC_BITS], _bits_int(bits[-CRC_BITS:])
    payload = WatermarkPayload.from_bits(bits) if _crc8(data) == crc else None
    if payload is not None:
        # The payload chips' key signs are independent of the sync's, and the code is linear,
        # so in unmarked content the decoded payload is uniform: its CRC matches with
        # probability 2^-8, independently of the sync evidence.
        p *= 2.0 ** -CRC_BITS
    p = min(1.0, p)
    return WatermarkDetection(
        detected=bool(p < P_THRESHOLD and payload is not None), payload=payload, p_value=p,
        bit_accuracy=agreement, frames_used=frames_used,
        z_score=z_best if mode == "spread" else z_unshifted, offset=offset, scale=scale,
        mode=mode, bits=bits,
    )


def detect_watermark(frames: np.ndarray, key: bytes | None = None, search_scales: bool = True) -> WatermarkDetection:
    """Look for cinecube's watermark in (T, H, W, 3) uint8 frames (or one (H, W, 3) image).

    Tries the frames as they are and, when ``search_scales``, resized back from each of
    SEARCH_SCALES (a resized or cropped-and-resized copy); every cyclic offset of the tile
    is searched (a crop). The p-value pays for every offset, scale and mode.
    """
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or min(arr.shape[:3]) < 1:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {arr.dtype} {tuple(arr.shape)}")
    return _detect_folded(_folds(arr, search_scales), key or DEFAULT_KEY, int(arr.shape[0]))
