"""Integrated loudness (ITU-R BS.1770-4) and the limiter's moving filters, in numpy alone.

Why not ``pyloudnorm`` directly: it is the reference (and the tests compare against it
to within 0.01 LU), but importing it pulls in ``scipy.signal`` (about 1 s of CPU) and
its gating loop costs about 12 ms per measurement of 10 s of speech, and the voice stage
measures every file three to five times while it settles the limiter. That was most of
``aicp-voice``'s overhead over a plain Piper loop (``bench/voice_overhead.py``).

What is here follows pyloudnorm 0.1.x exactly:

- the K-weighting pre-filter is pyloudnorm's two RBJ-cookbook biquads (high shelf
  +4 dB at 1,500 Hz, Q 1/√2; high pass at 38 Hz, Q 0.5) for the actual sample rate;
  they are applied in the frequency domain (numpy FFT in float32, overlap-save) instead
  of with ``scipy.signal.lfilter``. Their impulse response decays below 1e-9 within
  0.085 s and 0.1 s is the overlap kept, so the loudness equals the recursive filter's
  to about 1e-6 LU (tested);
- gating blocks of 400 ms every 100 ms with pyloudnorm's block bounds, the absolute gate
  at -70 LKFS and the relative gate 10 LU below, mono (channel gain 1).

Sources: ITU-R BS.1770-4; R. Bristow-Johnson, "Audio EQ Cookbook"; pyloudnorm
(C. Steinmetz, ``meter.py`` and ``iirfilter.py``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

BLOCK_SECONDS = 0.4
STEP = 0.25  # of a block: 75 % overlap
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
_TAIL_SECONDS = 0.1  # the K-weighting impulse response is below 1e-9 after 0.085 s (8-48 kHz)
_SEGMENT = 1 << 15


def _biquad(kind: str, gain_db: float, q: float, fc: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """``(b, a)`` of an RBJ-cookbook biquad as pyloudnorm designs it (``a[0]`` not normalized)."""
    big_a = 10 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * (fc / rate)
    alpha = np.sin(w0) / (2.0 * q)
    cos, root = np.cos(w0), 2 * np.sqrt(big_a) * alpha
    if kind == "high_shelf":
        b = [big_a * ((big_a + 1) + (big_a - 1) * cos + root), -2 * big_a * ((big_a - 1) + (big_a + 1) * cos),
             big_a * ((big_a + 1) + (big_a - 1) * cos - root)]
        a = [(big_a + 1) - (big_a - 1) * cos + root, 2 * ((big_a - 1) - (big_a + 1) * cos),
             (big_a + 1) - (big_a - 1) * cos - root]
    else:  # high_pass
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
        a = [1 + alpha, -2 * cos, 1 - alpha]
    return np.array(b), np.array(a)


def k_weighting_filters(rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two K-weighting biquads ``[(b, a), (b, a)]`` at ``rate`` Hz (pyloudnorm's design)."""
    return [_biquad("high_shelf", 4.0, 1 / np.sqrt(2), 1500.0, rate), _biquad("high_pass", 0.0, 0.5, 38.0, rate)]


@lru_cache(maxsize=8)
def _response(rate: int, n_fft: int) -> np.ndarray:
    """The K-weighting frequency response at the ``n_fft // 2 + 1`` bins of an rfft."""
    z = np.exp(-2j * np.pi * np.arange(n_fft // 2 + 1) / n_fft)
    h = np.ones_like(z)
    for b, a in k_weighting_filters(rate):
        h *= (b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)
    return h.astype(np.complex64)


def k_weighted(samples: np.ndarray, rate: int) -> np.ndarray:
    """``samples`` (mono, any float dtype) through the K-weighting filter: float32, same length.

    Overlap-save FFT filtering in segments of 32 Ki samples, so memory stays bounded for
    any length.
    """
    x = np.asarray(samples, dtype=np.float32)
    n = len(x)
    tail = int(_TAIL_SECONDS * rate)
    n_fft = _SEGMENT
    while n_fft < 4 * tail:
        n_fft *= 2
    hop = n_fft - tail
    h = _response(rate, n_fft)
    out = np.empty(n, dtype=np.float32)
    padded = np.concatenate([np.zeros(tail, dtype=np.float32), x])  # the filter starts at rest
    for start in range(0, n, hop):
        y = np.fft.irfft(np.fft.rfft(padded[start:start + n_fft], n_fft) * h, n_fft)
        take = min(hop, n - start)
        out[start:start + take] = y[tail:tail + take]
    return out


def integrated_loudness(samples: np.ndarray, rate: int) -> float:
    """Gated integrated loudness of mono ``samples`` at ``rate`` Hz, in LUFS.

    Same result as ``pyloudnorm.Meter(rate).integrated_loudness`` (to about 1e-6 LU);
    ``-inf`` when every block is gated out (silence). ``samples`` must be at least one
    400 ms block long.
    """
    return gated_loudness(k_weighted(samples, rate), rate)


def gated_loudness(weighted: np.ndarray, rate: int) -> float:
    """The BS.1770-4 gated loudness (LUFS) of an already K-weighted mono signal
    (:func:`k_weighted`); ``-inf`` when every block is gated out.

    K-weighting is linear and a smooth gain envelope commutes with it to within about
    1e-4 LU (the envelope changes over tens of ms, the filter's memory is a few ms), so
    ``gated_loudness(k_weighted(x) * envelope)`` measures ``x * envelope`` without
    filtering again: the voice stage's loudness search uses this (tested against
    pyloudnorm on the final files).
    """
    y = weighted
    total = len(y) / rate
    blocks = int(np.round((total - BLOCK_SECONDS) / (BLOCK_SECONDS * STEP))) + 1
    j = np.arange(blocks)
    lower = (BLOCK_SECONDS * (j * STEP) * rate).astype(np.int64)
    upper = (BLOCK_SECONDS * (j * STEP + 1) * rate).astype(np.int64)
    # Sums of squares between consecutive block bounds (100 ms hops), then per block.
    bounds = np.unique(np.minimum(np.concatenate([lower, upper]), len(y)))
    squares = np.concatenate([np.square(y, dtype=np.float64), [0.0]])  # a sentinel: bounds may equal len(y)
    hops = np.add.reduceat(squares, bounds)[:-1]
    energy = np.concatenate([[0.0], np.cumsum(hops)])
    at = np.searchsorted(bounds, np.minimum(np.stack([lower, upper]), len(y)))
    z = np.maximum((energy[at[1]] - energy[at[0]]) / (BLOCK_SECONDS * rate), 0.0)
    return gate_blocks(z)


def gate_blocks(z: np.ndarray) -> float:
    """Integrated loudness in LUFS of the mean squares ``z`` (K-weighted, one per 400 ms
    block, float64 ``[n_blocks]``): the absolute gate (−70 LUFS), then the relative gate
    (−10 LU below the absolutely gated mean), as ITU-R BS.1770-4 gates; ``-inf`` when no
    block is left."""
    with np.errstate(divide="ignore"):
        level = -0.691 + 10.0 * np.log10(z)
        gated = z[level >= ABSOLUTE_GATE_LUFS]
        if not len(gated):
            return float("-inf")
        relative = -0.691 + 10.0 * np.log10(gated.mean()) + RELATIVE_GATE_LU
        kept = z[(level > relative) & (level > ABSOLUTE_GATE_LUFS)]
        if not len(kept):
            return float("-inf")
        return float(-0.691 + 10.0 * np.log10(kept.mean()))


def moving_minimum(x: np.ndarray, size: int) -> np.ndarray:
    """Minimum over a centred window of ``size`` (odd) samples, edges extended with the edge
    value (``scipy.ndimage.minimum_filter1d(x, size, mode="nearest")``); van Herk/Gil-Werman,
    O(n) whatever ``size``."""
    half, n = size // 2, len(x)
    blocks = -(-(n + size - 1) // size)
    padded = np.empty(blocks * size, dtype=x.dtype)
    padded[:half] = x[0]
    padded[half:half + n] = x
    padded[half + n:] = x[-1]
    rows = padded.reshape(blocks, size)
    prefix = np.minimum.accumulate(rows, axis=1).ravel()
    suffix = np.minimum.accumulate(rows[:, ::-1], axis=1)[:, ::-1].ravel()
    return np.minimum(suffix[:n], prefix[size - 1:size - 1 + n])


def moving_mean(x: np.ndarray, size: int) -> np.ndarray:
    """Mean over a centred window of ``size`` (odd) samples, edges extended
    (``scipy.ndimage.uniform_filter1d(x, size, mode="nearest")``), via a cumulative sum."""
    half = size // 2
    sums = np.empty(len(x) + 2 * half + 1)
    sums[0] = 0.0
    np.cumsum(np.concatenate([np.full(half, x[0]), x, np.full(half, x[-1])]), out=sums[1:])
    return (sums[size:] - sums[:-size]) / size
