"""ai_content_pipeline.loudness against its references: pyloudnorm and scipy.ndimage."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyloudnorm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from ai_content_pipeline import audio
from ai_content_pipeline.loudness import (
    integrated_loudness,
    k_weighting_filters,
    moving_mean,
    moving_minimum,
)


def speechlike(rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    syllables = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    x = 0.2 * np.sin(2 * np.pi * 180 * t) * syllables + 0.03 * rng.standard_normal(n) * syllables
    x[: n // 4] *= 0.002  # a quiet lead-in the gates must drop
    return x.astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 44100, 48000])
@pytest.mark.parametrize("seconds", [0.41, 2.5, 13.7, 75.0])
def test_integrated_loudness_equals_pyloudnorm(rate, seconds) -> None:
    x = speechlike(rate, seconds, seed=rate)
    want = pyloudnorm.Meter(rate).integrated_loudness(x.astype(np.float64))
    assert abs(integrated_loudness(x, rate) - want) < 0.001


def test_k_weighting_is_pyloudnorms_design() -> None:
    meter = pyloudnorm.Meter(44100)
    for (b, a), ref in zip(k_weighting_filters(44100), meter._filters.values(), strict=True):
        assert np.allclose(b / a[0], ref.b / ref.a[0]) and np.allclose(a / a[0], ref.a / ref.a[0])


def test_silence_is_gated_out() -> None:
    assert integrated_loudness(np.zeros(24000, dtype=np.float32), 24000) == float("-inf")
    assert audio.measure_loudness(np.zeros(100, dtype=np.float32), 24000) is None


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000), st.sampled_from([1, 3, 5, 221, 441]), st.integers(0, 2**32 - 1))
def test_moving_filters_equal_scipy_ndimage(n, size, seed) -> None:
    x = np.random.default_rng(seed).random(n).astype(np.float32)
    assert np.array_equal(moving_minimum(x, size), minimum_filter1d(x, size, mode="nearest"))
    assert np.allclose(moving_mean(x, size), uniform_filter1d(x.astype(np.float64), size, mode="nearest"),
                       atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_limiter_only_filters_near_peaks_and_equals_the_whole_signal_filter(seed) -> None:
    x = speechlike(22050, 6.0, seed) * 6
    size = 2 * int(audio.LIMITER_WINDOW_SECONDS * 22050) + 1
    ceiling = 10 ** (audio.PEAK_CEILING_DBFS / 20)
    need = np.minimum(1.0, ceiling / np.maximum(np.abs(x), 1e-12))
    whole = np.clip(x * uniform_filter1d(minimum_filter1d(need, size, mode="nearest"), size, mode="nearest"),
                    -ceiling, ceiling)
    got = audio.limit_peaks(x, 22050)
    assert np.allclose(got, whole, atol=1e-6) and audio.peak_dbfs(got) <= audio.PEAK_CEILING_DBFS + 1e-4


def test_normalized_speech_hits_the_target_by_pyloudnorm() -> None:
    x = speechlike(22050, 9.0, 3)
    out, level = audio.normalize_loudness_measured(x, 22050, -16.0)
    assert abs(pyloudnorm.Meter(22050).integrated_loudness(out.astype(np.float64)) + 16.0) < 0.05
    assert level is not None and abs(level + 16.0) < 0.05
    assert audio.peak_dbfs(out) <= -1.0 + 1e-4


def test_the_voice_path_never_imports_scipy(tmp_path) -> None:
    code = ("import sys, numpy as np\nfrom ai_content_pipeline import audio\n"
            "x = (np.sin(np.arange(48000) / 7) * 0.9).astype(np.float32)\n"
            "audio.normalize_loudness_measured(x, 24000, -16.0)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'pyloudnorm')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
