"""Invisible, keyed watermark carried by every frame cinecube writes.

What is embedded: a 48-bit payload (16-bit model id, 24-bit generation id, 8-bit CRC),
protected by a rate-1/2 convolutional code, plus a payload-independent sync signal that
gives detection its p-value.

Where: a tile is added to the luma of every frame, repeated across the frame from its
top-left corner. Its 2-D spectrum holds a band of 108 frequency bins; each bin holds two
real "chips"; a keyed permutation gives 40 bins to the sync and 68 to the coded payload,
and keyed random signs scramble every chip. The same change goes to R, G and B, so only
luma moves. Two layouts of the band, each with its own keyed permutation and signs:
- tiled: a 32x32 tile, the bins with at most 7 cycles per tile on either axis (periods down
  to 4.6 pixels) and at least 2 on one of them. Many copies in a large frame, and a crop only
  shifts the tile; but a 0.5x bicubic resize and back keeps 40 % of the amplitude at 7
  cycles per tile (less at the band's corners): its upper half is lost on small frames.
- low-band: a tile as large as the frame, up to 64x64 (48x64 for a 48x80 frame), the 108
  bins lowest in frequency from 1/16 cycle per pixel up (at 64x64: 4 to 8 cycles per tile,
  at most 1/8 cycle per pixel, half a 0.5x copy's Nyquist frequency: a bicubic resize to half
  size and back keeps 88 % of the amplitude along an axis, 77 % at the band's corners). A crop
  of a frame below 64 pixels changes the tile, so crops of small frames are lost.
The embedding's PSNR is TARGET_PSNR_DB (the output gate lowers it step by step for a clip
whose payload a lossy file format or a resize would lose: safety/guard.py reads every file
back before it publishes it).

Two ways of embedding, chosen per clip:
- spread spectrum (videos, large images): the tile is added, its amplitude following the
  texture of each frame; what the picture itself puts into the band, averaged the way the
  detector averages, is partly cancelled. Low-band layout below 128 pixels a side, tiled
  from there. Survives H.264, resizing, brightness, crops (tiled).
- quantization (dither modulation), when the picture would drown spread spectrum (one
  small still image, or a small clip of real footage), always in the low-band layout: the
  tile-average of the luma is moved so each chip lands on the lattice of the bit it
  carries. The picture cannot interfere. A brightness change scales every chip, a resize
  scales each by a smooth function of its frequency (any symmetric resampler acts as
  exp(-a f^2) below a quarter of the sampling rate), so detection searches gains and blurs
  (and reads values clipped at 255 as the middle of what they stood for); a crop breaks it.

Detection folds all frames onto each layout's tile (the average of every tile copy; dropped
frames only lower the evidence), takes its spectrum, keeps the phase of each bin and
correlates with the sync at every cyclic offset with one FFT, for the frames as they are and
resized back from a few scales; quantization mode's lattice is checked at offset 0 for every
gain and blur. The payload is read by soft Viterbi at the best candidates.

The p-value holds for any content, over the key's randomness: at one offset the sync
statistic is a sum of terms scrambled by independent random signs, so P(z >= t) <=
exp(-t^2 / 2) (Chernoff; every term is sub-Gaussian with the variance it contributes);
quantization mode's sync count is exactly Binomial(80, 1/2) for any gain and blur.
Layouts, offsets, scales, gains, blurs and modes are paid for by a weighted Bonferroni
correction; a matching CRC multiplies it by 2^-8 (the payload chips' signs are independent
of the sync's and the code is linear, so a decoded payload from unmarked content is
uniform). Detected = p < P_THRESHOLD and the CRC
matches. benchmarks/watermark_robustness.py checks all this on clean clips.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass

import numpy as np

TILE = 32  # the tiled layout's period in pixels
BAND = 7  # the tiled layout's highest frequency, cycles per tile on each axis
MODEL_ID_BITS = 16
GENERATION_ID_BITS = 24
CRC_BITS = 8
PAYLOAD_BITS = MODEL_ID_BITS + GENERATION_ID_BITS + CRC_BITS  # 48
BAND_BINS = 108  # frequency bins of every layout's band (two real chips each)
BAND_LOWEST = 1 / 16  # cycles per pixel: slower bins are left to the picture (2 cycles per tile)
SYNC_BINS = 40  # of the band's 108 bins; the other 68 (136 real chips) carry the payload
# The low-band layout: a tile as large as the frame up to LOW_TILE pixels a side, its bins
# the lowest-frequency ones (at 64x64 up to 7 cycles per 64 pixels). Spread spectrum uses it
# for frames below LOW_BAND_BELOW pixels a side; quantization mode always does.
LOW_TILE = 64
LOW_BAND_BELOW = 128
TARGET_PSNR_DB = 40.0  # PSNR of the embedding (luma change only)
MASK_POWER = 0.5  # texture shaping is softened: H.264 erases a faint signal in flat areas
HOST_CANCEL_SHARE = 0.5  # at most this share of the embedding's energy cancels the host
P_THRESHOLD = 1e-5  # detected when p < this and the CRC matches: at most 1e-5 false positives
# Spread spectrum is used when, before any distortion, its sync reaches this z-score and its
# payload decodes; otherwise the picture dominates the band and quantization mode is used.
SPREAD_MIN_Z = 7.0
# Gains searched in quantization mode (a brightness change scales its lattice): x0.7 to x1.35.
QUANTIZED_GAINS = 1.02 ** np.arange(-18, 16)
# Blurs searched in quantization mode (a resize): each bin kept exp(-a (fu^2 + fv^2)), fu and fv
# in cycles per pixel, for a from -16 (sharpening; with clipping a brightened clip looks like a
# slight one) to 32 (bilinear at 0.5x). Bicubic at 0.5x is a ~ 5.5, box ~ 10, Lanczos ~ -2.
QUANTIZED_BLURS = np.arange(-16.0, 34.0, 2.0)
QUANTIZED_DECODED = 8  # blur-and-gain candidates whose payload quantization mode decodes
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
        if not 0 <= self.model_id < 2**MODEL_ID_BITS:
            raise ValueError(f"model_id must be in [0, {2**MODEL_ID_BITS}), got {self.model_id}")
        if not 0 <= self.generation_id < 2**GENERATION_ID_BITS:
            raise ValueError(f"generation_id must be in [0, {2**GENERATION_ID_BITS}), got {self.generation_id}")

    def to_bits(self) -> np.ndarray:
        """(48,) uint8: model id, generation id, then the CRC-8 of those 40 bits."""
        data = np.concatenate(
            [_int_bits(self.model_id, MODEL_ID_BITS), _int_bits(self.generation_id, GENERATION_ID_BITS)]
        )
        return np.concatenate([data, _int_bits(_crc8(data), CRC_BITS)])

    @classmethod
    def from_bits(cls, bits: np.ndarray) -> WatermarkPayload:
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
    return WatermarkPayload(int(digest[:4], 16), generation_id % 2**GENERATION_ID_BITS)


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
# Keyed layouts of the band
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    shape: tuple[int, int]  # (rows, columns) of the tile the pattern repeats with
    u: np.ndarray  # (108,) row frequency of each bin, cycles per tile (may be negative)
    v: np.ndarray  # (108,) column frequency, >= 0
    sync: np.ndarray  # (108,) bool: bin carries the sync
    signs: np.ndarray  # (108, 2) +-1 keyed scrambling of the real and imaginary chip
    coded_index: np.ndarray  # (108, 2) which coded bit a payload chip carries (-1 for sync)
    label: bytes  # suffix of this layout's key streams (empty for the 32x32 tiled layout)


def _key_stream(key: bytes, label: bytes, n: int) -> np.ndarray:
    """n pseudo-random uint32 derived from the key (SHAKE-256, stable on every platform)."""
    raw = hashlib.shake_256(b"cinecube-watermark\0" + label + b"\0" + key).digest(4 * n)
    return np.frombuffer(raw, dtype="<u4").astype(np.int64)


@functools.lru_cache(maxsize=64)
def _band_bins(shape: tuple[int, int] = (TILE, TILE)) -> tuple[np.ndarray, np.ndarray]:
    """The BAND_BINS half-plane bins of a (rows, columns) tile lowest in frequency (cycles per
    pixel, the larger of the two axes'), without DC and the slowest ones (at most 1 cycle per
    tile on both axes: too close to the picture's own content).

    For the 32x32 tiled layout these are the bins with max(|u|, |v|) in [2, 7]; for a 64x64
    tile the same (u, v), which are the same physical frequencies halved; a 48x64 tile gets
    its own. Returned in a fixed order (column frequency, then row frequency)."""
    th, tw = shape
    bins = [
        (u, v)
        for v in range(0, (tw + 1) // 2)
        for u in range(-((th - 1) // 2), (th + 1) // 2)
        if (v > 0 or u > 0) and max(abs(u) / th, abs(v) / tw) >= BAND_LOWEST
    ]  # below Nyquist
    if len(bins) < BAND_BINS:
        raise ValueError(f"a {th}x{tw} tile has too few low-frequency bins for the watermark")
    freq = np.array([max(abs(u) / th, abs(v) / tw) for u, v in bins])
    keep = np.sort(np.argsort(freq, kind="stable")[:BAND_BINS])
    return np.array([bins[i][0] for i in keep]), np.array([bins[i][1] for i in keep])


@functools.lru_cache(maxsize=32)
def _layout(key: bytes, shape: tuple[int, int] = (TILE, TILE)) -> _Layout:
    """The keyed layout of a tile shape. Every shape draws its own sync bins, signs and chip
    order from the key (the 32x32 layout with the labels it always had)."""
    label = b"" if shape == (TILE, TILE) else f"/{shape[0]}x{shape[1]}".encode()
    u, v = _band_bins(shape)
    n = u.size
    order = np.argsort(_key_stream(key, b"bins" + label, n), kind="stable")
    sync = np.zeros(n, dtype=bool)
    sync[order[:SYNC_BINS]] = True
    signs = 1 - 2 * (_key_stream(key, b"signs" + label, 2 * n) & 1).reshape(n, 2)
    coded_index = np.full((n, 2), -1, dtype=np.int64)
    payload_chips = np.stack(np.nonzero(~sync[:, None].repeat(2, axis=1)), axis=1)  # (136, 2)
    chip_order = np.argsort(_key_stream(key, b"chips" + label, len(payload_chips)), kind="stable")
    for rank, chip in enumerate(payload_chips[chip_order]):
        coded_index[chip[0], chip[1]] = rank % CODED_BITS  # every coded bit gets >= 1 chip
    return _Layout(shape, u, v, sync, signs.astype(np.float64), coded_index, label)


def _low_shape(height: int, width: int) -> tuple[int, int]:
    """The low-band layout's tile for a height x width frame: the frame itself, at most
    LOW_TILE and at least TILE pixels a side. At 64x64 its bins lie at or below 8 cycles per
    64 pixels (1/8 cycle per pixel), where a 0.5x bicubic resize and back keeps 88 % of the
    amplitude (40 % at the tiled band's top, 7 cycles per 32 pixels)."""
    return min(max(height, TILE), LOW_TILE), min(max(width, TILE), LOW_TILE)


def _spread_shape(height: int, width: int) -> tuple[int, int]:
    """The tile spread spectrum is embedded with: the low-band layout below LOW_BAND_BELOW
    pixels (few tile copies, a resize there would take the tiled band's upper half), the 32x32
    tiled layout from there up (many copies; it survives crops of any size)."""
    return _low_shape(height, width) if min(height, width) < LOW_BAND_BELOW else (TILE, TILE)


def _chip_data(lay: _Layout, payload: WatermarkPayload) -> np.ndarray:
    """(108, 2) +-1: what every real chip carries (+1 for sync, the coded bit otherwise)."""
    coded = 1.0 - 2.0 * _conv_encode(payload.to_bits())  # (108,) +-1, bit 0 -> +1
    return np.where(lay.coded_index >= 0, coded[np.maximum(lay.coded_index, 0)], 1.0)


def _to_tile(chips: np.ndarray, lay: _Layout) -> np.ndarray:
    """(108, 2) real and imaginary parts of the band bins -> the real tile, lay.shape."""
    th, tw = lay.shape
    spectrum = np.zeros(lay.shape, dtype=np.complex128)
    spectrum[lay.u % th, lay.v % tw] = chips[:, 0] + 1j * chips[:, 1]
    spectrum[-lay.u % th, -lay.v % tw] = chips[:, 0] - 1j * chips[:, 1]
    return np.fft.ifft2(spectrum).real


def _band_chips(tile: np.ndarray, lay: _Layout) -> np.ndarray:
    """A tile, lay.shape -> (108, 2) real and imaginary parts of its band bins (inverse of _to_tile)."""
    th, tw = lay.shape
    spectrum = np.fft.fft2(tile)[lay.u % th, lay.v % tw]
    return np.stack([spectrum.real, spectrum.imag], axis=1)


@functools.lru_cache(maxsize=64)
def _tile(key: bytes, payload: WatermarkPayload, shape: tuple[int, int] = (TILE, TILE)) -> np.ndarray:
    """The spread-spectrum pattern, ``shape``, with unit RMS for this key and payload."""
    lay = _layout(key, shape)
    tile = _to_tile(lay.signs * _chip_data(lay, payload), lay)
    return tile / np.sqrt(np.mean(tile**2))


# --------------------------------------------------------------------------------------------
# Embedding
# --------------------------------------------------------------------------------------------

_LUMA = np.array([0.299, 0.587, 0.114])


def _luma(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, H, W) float32 luma."""
    return frames.astype(np.float32) @ _LUMA.astype(np.float32)


def _texture_mask(luma: np.ndarray) -> np.ndarray:
    """(T, H, W) -> (T, H, W) relative amplitude: ~1 in flat areas, up to 3x where busy.

    Busy = mean absolute deviation from a 3x3 average, pooled over 5x5 pixels.
    """
    from scipy.ndimage import uniform_filter

    detail = np.abs(luma - uniform_filter(luma, size=(1, 3, 3), mode="reflect"))
    activity = uniform_filter(detail, size=(1, 5, 5), mode="reflect")
    return np.clip((activity + 2.0) / (float(activity.mean()) + 2.0), 0.5, 3.0) ** MASK_POWER


def _target_mse(psnr_db: float = TARGET_PSNR_DB) -> float:
    return 255.0**2 * 10 ** (-psnr_db / 10)


def _band_part(tile: np.ndarray, lay: _Layout) -> np.ndarray:
    """The part of a tile (lay.shape) that lies in the layout's band (both half-planes)."""
    th, tw = lay.shape
    spectrum = np.fft.fft2(tile)
    keep = np.zeros(lay.shape, dtype=bool)
    keep[lay.u % th, lay.v % tw] = True
    keep[-lay.u % th, -lay.v % tw] = True
    return np.fft.ifft2(np.where(keep, spectrum, 0)).real


def _repeat(tile: np.ndarray, height: int, width: int) -> np.ndarray:
    """A tile repeated over a height x width frame from its top-left corner (partial at the edges)."""
    th, tw = tile.shape
    return np.tile(tile, (-(-height // th), -(-width // tw)))[:height, :width]


def _embed_spread(arr: np.ndarray, payload: WatermarkPayload, key: bytes, psnr_db: float, lay: _Layout) -> np.ndarray:
    """Spread-spectrum mode: the keyed tile, shaped by texture, plus partial host cancelling.
    Detection reads only the phase of each bin, so any amplitude (``psnr_db``) is detected alike."""
    t, h, w, _ = arr.shape
    luma = _luma(arr)
    target_mse = _target_mse(psnr_db)
    # Informed embedding: what the picture itself puts into the band, averaged the way the
    # detector averages, is partly cancelled so that it drowns the pattern less. For a long
    # or large clip this average is tiny and is cancelled fully.
    cancel = -_band_part(_fold(luma, lay.shape), lay)  # lay.shape
    cancel_mse = float(np.mean(cancel**2))
    cancel *= min(1.0, math.sqrt(HOST_CANCEL_SHARE * target_mse / max(cancel_mse, 1e-12)))
    cancel_mse = float(np.mean(cancel**2))
    pattern = _repeat(_tile(key, payload, lay.shape), h, w).astype(np.float32)  # (H, W)
    delta = _texture_mask(luma) * pattern  # (T, H, W)
    delta *= np.float32(math.sqrt((target_mse - cancel_mse) / max(float(np.mean(delta**2)), 1e-12)))
    delta += _repeat(cancel, h, w).astype(np.float32)
    return np.clip(np.rint(arr.astype(np.float32) + delta[..., None]), 0, 255).astype(np.uint8)


def _chip_unit(lay: _Layout) -> float:
    """Raw DFT part of a tile (lay.shape) -> orthonormal chip coordinate."""
    return math.sqrt(2.0 / (lay.shape[0] * lay.shape[1]))


def _qim_step(lay: _Layout) -> float:
    """Quantizer step, in orthonormal chip units, that spends the embedding's MSE budget
    (a uniform quantization error of step^2 / 12 in each of the 216 chips of a tile)."""
    return math.sqrt(12.0 * lay.shape[0] * lay.shape[1] * _target_mse() / (2 * lay.u.size))


def _qim_offsets(lay: _Layout, data: np.ndarray, key: bytes) -> np.ndarray:
    """(108, 2) lattice offset of every chip, in steps: keyed dither, plus half a step for a 1."""
    dither = (_key_stream(key, b"dither" + lay.label, data.size) / 2.0**32).reshape(data.shape)
    return dither + (data < 0) * 0.5


def _embed_quantized(arr: np.ndarray, payload: WatermarkPayload, key: bytes, lay: _Layout) -> np.ndarray:
    """Quantization mode (dither modulation): the tile-average of the luma is moved so each
    chip lands on the lattice of the value it carries. The picture cannot interfere with
    this, which is what a small still image or a small clip of real footage needs. It is
    embedded in the low-band layout, where a resize scales each chip by a smooth function of
    its frequency that detection searches; a crop moves the chips off the lattice."""
    t, h, w, _ = arr.shape
    offsets = _qim_offsets(lay, _chip_data(lay, payload), key)
    step, unit = _qim_step(lay), _chip_unit(lay)
    out = arr
    for _ in range(3):  # clipping and rounding move a few chips off the lattice: correct again
        coords = _band_chips(_fold(_luma(out), lay.shape), lay) * unit / step  # (108, 2), in steps
        error = coords - offsets
        correction = (np.rint(error) - error) * step / unit
        delta = _repeat(_to_tile(correction, lay).astype(np.float32), h, w)
        out = np.clip(np.rint(out.astype(np.float32) + delta[None, ..., None]), 0, 255).astype(np.uint8)
    return out


def embed_watermark(
    frames: np.ndarray, payload: WatermarkPayload, key: bytes | None = None, psnr_db: float = TARGET_PSNR_DB
) -> np.ndarray:
    """Add the watermark for ``payload`` to every frame: (T, H, W, 3) uint8 -> same shape.

    A single image may be passed as (H, W, 3). Spread spectrum is used (the same keyed
    tile in every frame, shaped by texture; the low-band layout below LOW_BAND_BELOW pixels,
    the 32x32 tiled one above) unless the picture's own content would drown it (typically
    one small still image or a small clip of real footage); then quantization mode is used,
    in the low-band layout. Spread spectrum is embedded at ``psnr_db`` (a lower PSNR is a
    stronger mark: the output gate lowers it when a lossy file format would otherwise lose
    the payload); quantization mode always uses the lattice step of TARGET_PSNR_DB, which
    its detector assumes.
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
    h, w = arr.shape[1:3]
    lay = _layout(key, _spread_shape(h, w))
    out = _embed_spread(arr, payload, key, psnr_db, lay)
    whitened, scores = _sync_scores(_fold(_luma(out), lay.shape), lay)
    bits, _ = _decode(_spread_chips(whitened, (0, 0), lay), lay)
    if scores[0, 0] < SPREAD_MIN_Z or not np.array_equal(bits, payload.to_bits()):
        out = _embed_quantized(arr, payload, key, _layout(key, _low_shape(h, w)))
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
    tile: tuple[int, int] = (TILE, TILE)  # the layout's tile: (32, 32) tiled, else low-band


def _fold(luma: np.ndarray, shape: tuple[int, int] = (TILE, TILE)) -> np.ndarray:
    """(T, H, W) or (H, W) -> ``shape``: the mean of all tile copies of all frames, per tile
    pixel (partial tiles at the right and bottom edges count where they have pixels)."""
    th, tw = shape
    frames = luma.shape[0] if luma.ndim == 3 else 1
    plane = luma.sum(axis=0, dtype=np.float64) if luma.ndim == 3 else luma.astype(np.float64)
    h, w = plane.shape
    ph, pw = -(-h // th) * th, -(-w // tw) * tw
    padded = np.zeros((ph, pw))
    padded[:h, :w] = plane
    total = padded.reshape(ph // th, th, pw // tw, tw).sum(axis=(0, 2))
    count = np.zeros((ph, pw))
    count[:h, :w] = frames
    count = count.reshape(ph // th, th, pw // tw, tw).sum(axis=(0, 2))
    return total / np.maximum(count, 1)


def _sync_scores(folded: np.ndarray, lay: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """Whitened band spectrum (108,) and the sync z-score for every cyclic offset, lay.shape."""
    th, tw = lay.shape
    spectrum = np.fft.fft2(folded)[lay.u % th, lay.v % tw]
    whitened = spectrum / np.maximum(np.abs(spectrum), 1e-9)  # phase only: each bin weighs 1
    weights = np.zeros(lay.shape, dtype=np.complex128)
    sel = lay.sync
    # Re(g X) = sign_re Re X + sign_im Im X with g = sign_re - i sign_im
    g = lay.signs[sel, 0] - 1j * lay.signs[sel, 1]
    weights[lay.u[sel] % th, lay.v[sel] % tw] = g * whitened[sel]
    # numpy's fft2 sums X e^{-2 pi i (u dy / th + v dx / tw)}: it undoes a shift of (dy, dx)
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
    th, tw = lay.shape
    aligned = whitened * np.exp(-2j * np.pi * (lay.u * dy / th + lay.v * dx / tw))
    return np.stack([aligned.real, aligned.imag], axis=1) * lay.signs


def _blur_gains(lay: _Layout) -> np.ndarray:
    """(blurs, 108) how much each blur of QUANTIZED_BLURS keeps of every bin: exp(-a (fu^2 + fv^2)),
    fu and fv in cycles per pixel. Below a quarter of the sampling rate this is how any
    symmetric resampler acts, a resize down and back included (to ~1 %: bicubic at 0.5x has
    a ~ 5.5, bilinear ~ 30, box ~ 10, Lanczos ~ -2)."""
    fu, fv = lay.u / lay.shape[0], lay.v / lay.shape[1]
    return np.exp(-QUANTIZED_BLURS[:, None] * (fu**2 + fv**2)[None])


def _quantized_search(
    folded: np.ndarray, saturated: np.ndarray, lay: _Layout, key: bytes
) -> tuple[np.ndarray, np.ndarray]:
    """Quantization mode at offset 0 for every blur of QUANTIZED_BLURS and gain of QUANTIZED_GAINS.

    ``folded`` is the folded luma, ``saturated`` the folded luma share of channel values at 255
    (both lay.shape). A gain g > 1 clips: a value read as 255 stood for one between 255 and
    255 g, and is taken as the middle of that range.

    Returns the number of sync chips on their lattice and their mean distance to it, both
    (blurs, gains), and the chip coordinates in steps for every gain, (gains, 108, 2). A chip lands on its lattice with
    probability 1/2 in unmarked content whatever the blur and gain (the dither is uniform over
    the key). Offsets are not searched: a crop changes which pixels each tile position
    averages, which moves the coordinates by far more than a step.
    """
    to_steps = _chip_unit(lay) / _qim_step(lay)
    excess = 127.5 * np.maximum(QUANTIZED_GAINS - 1.0, 0.0)  # (gains,) the clipped part, as read
    clipped = _band_chips(saturated, lay)[None] * to_steps  # (1, 108, 2)
    coords = _band_chips(folded, lay)[None] * to_steps + excess[:, None, None] * clipped
    sync_offsets = _qim_offsets(lay, np.ones((lay.u.size, 2)), key)[lay.sync]  # (40, 2)
    kept = _blur_gains(lay)[:, None, lay.sync] * QUANTIZED_GAINS[None, :, None]  # (blurs, gains, 40)
    e = coords[:, lay.sync][None] / kept[..., None] - sync_offsets  # (blurs, gains, 40, 2)
    distance = np.abs(e - np.rint(e))  # to the lattice of +1, in steps: uniform in [0, 1/2] if unmarked
    # on the lattice = within 1/4 step; the mean distance only breaks ties (it is below 1/2)
    return (distance < 0.25).sum(axis=(2, 3)), distance.mean(axis=(2, 3)), coords


def _quantized_soft(coords: np.ndarray, blur: int, gain: float, lay: _Layout, key: bytes) -> np.ndarray:
    """Soft chips (108, 2) from coordinates in steps (108, 2): +0.25 on the lattice of +1, -0.25
    on that of -1, after undoing blur number ``blur`` of QUANTIZED_BLURS and ``gain``."""
    e = coords / (gain * _blur_gains(lay)[blur][:, None]) - _qim_offsets(lay, np.ones_like(coords), key)
    return 0.25 - np.abs(e - np.rint(e))


def _binomial_tail(n: int, k: int) -> float:
    """P(Binomial(n, 1/2) >= k)."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2.0**n


def _resized_luma(luma: np.ndarray, scale: float) -> np.ndarray:
    """Resize (T, H, W) luma by 1/scale, undoing a resize by ``scale`` (bilinear, torch)."""
    import torch

    t, h, w = luma.shape
    size = (max(1, round(h / scale)), max(1, round(w / scale)))
    x = torch.from_numpy(np.ascontiguousarray(luma, dtype=np.float32))[:, None]
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale > 1)[
        :, 0
    ].numpy()


def _tail(z: float) -> float:
    """Chernoff bound on P(Z >= z) for a sum of sub-Gaussian terms with unit variance proxy."""
    return 1.0 if z <= 0 else math.exp(-0.5 * z * z)


# Shares of the p-value's test budget (weighted Bonferroni; they sum to 1): for each of the
# two spread-spectrum layouts (tiled, low-band) the unshifted sync and the search over all
# offsets and scales; quantization mode's sync as embedded, and its search over blurs and gains.
_BUDGET_UNSHIFTED, _BUDGET_SEARCH = 0.2, 0.2  # each, per spread layout
_BUDGET_QUANTIZED, _BUDGET_QUANTIZED_SEARCH = 0.1, 0.1
# Offsets paid for by each spread layout's search, for every scale (1 and SEARCH_SCALES),
# whatever the frame size: the low-band tile is at most LOW_TILE x LOW_TILE.
_SEARCHED = {"tiled": (1 + len(SEARCH_SCALES)) * TILE * TILE, "low": (1 + len(SEARCH_SCALES)) * LOW_TILE * LOW_TILE}


@dataclass(frozen=True)
class _Means:
    """What detection needs from a clip: its mean luma frame (H, W) as it is (scale 1) and
    resized back from each of SEARCH_SCALES, and the mean luma share of its channel values at
    255 (H, W). Folding and resizing are linear: every layout folds these, not every frame."""

    planes: dict[float, np.ndarray]
    saturated: np.ndarray


def _means(frames: np.ndarray, search_scales: bool = True) -> _Means:
    """The _Means of (T, H, W, 3) uint8 frames (scales whose frames are too small skipped)."""
    luma = _luma(frames).mean(axis=0, dtype=np.float64)  # (H, W)
    planes = {1.0: luma}
    for scale in SEARCH_SCALES if search_scales else ():
        source = _resized_luma(luma[None], scale)[0]
        if min(source.shape) >= TILE // 2:
            planes[scale] = source.astype(np.float64)
    saturated = ((frames == 255) @ _LUMA).mean(axis=0)  # (H, W)
    return _Means(planes, saturated)


def _decided(p: float, chips: np.ndarray, lay: _Layout) -> tuple[float, np.ndarray, float, WatermarkPayload | None]:
    """A candidate's payload decoded from its soft chips (108, 2): its p-value (``p``, the
    sync evidence with its share of the test budget, times 2^-8 when the CRC matches), the
    bits, their chip agreement and the payload (None when the CRC does not match)."""
    bits, agreement = _decode(chips, lay)
    data, crc = bits[:-CRC_BITS], _bits_int(bits[-CRC_BITS:])
    payload = WatermarkPayload.from_bits(bits) if _crc8(data) == crc else None
    if payload is not None:
        # The payload chips' key signs (dithers in quantization mode) are independent of the
        # sync's, and the code is linear, so in unmarked content the decoded payload is
        # uniform: its CRC matches with probability 2^-8, independently of the sync evidence.
        p *= 2.0**-CRC_BITS
    return min(1.0, p), bits, agreement, payload


def _detect_means(means: _Means, key: bytes, frames_used: int) -> WatermarkDetection:
    """detect_watermark() once the means are computed (the p-value pays for every layout
    and scale, searched or not, so it does not depend on the frame size).

    Every candidate's p-value carries its own share of the budget for all the tests of its
    kind, and its CRC is independent of its sync evidence, so keeping the smallest p-value of
    several decoded candidates is still bounded by the union over all of them."""
    planes = means.planes
    candidates = []  # (p before the CRC, scale, offset, mode, soft chips, layout)
    # quantization mode: low-band layout at scale 1 and offset 0, as embedded (no blur,
    # gain 1), and the QUANTIZED_DECODED blurs (a resize) and gains (a brightness change)
    # that put the most sync chips on their lattice
    low = _layout(key, _low_shape(*planes[1.0].shape))
    on_lattice, distance, coords = _quantized_search(
        _fold(planes[1.0], low.shape), _fold(means.saturated, low.shape), low, key
    )  # (blurs, gains), ...
    n_sync = 2 * int(low.sync.sum())
    b1, g1 = int(np.argmin(np.abs(QUANTIZED_BLURS))), int(np.argmin(np.abs(QUANTIZED_GAINS - 1.0)))
    candidates.append(
        (
            _binomial_tail(n_sync, int(on_lattice[b1, g1])) / _BUDGET_QUANTIZED,
            1.0,
            (0, 0),
            "quantized",
            _quantized_soft(coords[g1], b1, 1.0, low, key),
            low,
        )
    )
    for flat in np.argsort(-(on_lattice - distance), axis=None, kind="stable")[:QUANTIZED_DECODED]:
        b, g = np.unravel_index(int(flat), on_lattice.shape)
        p = _binomial_tail(n_sync, int(on_lattice[b, g])) * on_lattice.size / _BUDGET_QUANTIZED_SEARCH
        candidates.append(
            (p, 1.0, (0, 0), "quantized", _quantized_soft(coords[g], int(b), float(QUANTIZED_GAINS[g]), low, key), low)
        )
    # spread spectrum: both layouts, every offset, at every scale; the strongest is decoded
    spread, z_best, z_unshifted = None, 0.0, 0.0
    for scale, plane in planes.items():
        shapes = {"tiled": (TILE, TILE)}
        if min(plane.shape) >= TILE:
            shapes["low"] = _low_shape(*plane.shape)
        for name, shape in shapes.items():
            if name == "low" and shape == (TILE, TILE):
                continue  # a 32x32 frame: the low-band layout is the tiled one (paid for twice)
            lay = _layout(key, shape)
            whitened, scores = _sync_scores(_fold(plane, shape), lay)
            peak = np.unravel_index(int(np.argmax(scores)), scores.shape)
            tests = [(_tail(float(scores[peak])) * _SEARCHED[name] / _BUDGET_SEARCH, peak)]
            if scale == 1.0:
                z_unshifted = max(z_unshifted, float(scores[0, 0]))
                tests.append((_tail(float(scores[0, 0])) / _BUDGET_UNSHIFTED, (0, 0)))
            for p, offset in tests:
                if spread is None or p < spread[0]:
                    offset = (int(offset[0]), int(offset[1]))
                    spread = (p, scale, offset, "spread", _spread_chips(whitened, offset, lay), lay)
                    z_best = float(scores[offset])
    candidates.append(spread)
    best = None
    for p, scale, offset, mode, chips, lay in candidates:
        decided = _decided(p, chips, lay)
        if best is None or decided[0] < best[0][0]:
            best = (decided, scale, offset, mode, lay)
    (p, bits, agreement, payload), scale, offset, mode, lay = best
    return WatermarkDetection(
        detected=bool(p < P_THRESHOLD and payload is not None),
        payload=payload,
        p_value=p,
        bit_accuracy=agreement,
        frames_used=frames_used,
        z_score=z_best if mode == "spread" else z_unshifted,
        offset=offset,
        scale=scale,
        mode=mode,
        bits=bits,
        tile=lay.shape,
    )


def detect_watermark(frames: np.ndarray, key: bytes | None = None, search_scales: bool = True) -> WatermarkDetection:
    """Look for cinecube's watermark in (T, H, W, 3) uint8 frames (or one (H, W, 3) image).

    Tries both layouts on the frames as they are and, when ``search_scales``, resized back
    from each of SEARCH_SCALES (a resized or cropped-and-resized copy); every cyclic offset
    of the tile is searched (a crop), and quantization mode searches blurs and gains. The
    p-value pays for every layout, offset, scale, blur, gain and mode.
    """
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or min(arr.shape[:3]) < 1:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {arr.dtype} {tuple(arr.shape)}")
    return _detect_means(_means(arr, search_scales), key or DEFAULT_KEY, int(arr.shape[0]))
