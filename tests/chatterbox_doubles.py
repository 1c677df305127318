"""Doubles shaped like ``chatterbox.tts.ChatterboxTTS`` and the bits of ``torch`` the adapter uses.

Install them with :func:`install`, which replaces the adapter's loader hooks
(``_import_engine`` and ``_import_torch`` in ``ai_content_pipeline.backends.chatterbox``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np


class FakeTensor:
    """Tensor-like: ``detach().cpu().numpy()`` and ``shape``."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape = array.shape
        self.device = "cuda"

    def detach(self) -> FakeTensor:
        return self

    def cpu(self) -> FakeTensor:
        self.device = "cpu"
        return self

    def numpy(self) -> np.ndarray:
        assert self.device == "cpu", "numpy() on a GPU tensor"
        return self.array


class OutOfMemoryError(RuntimeError):
    """Stands in for ``torch.cuda.OutOfMemoryError``."""


class FakeCuda:
    OutOfMemoryError = OutOfMemoryError

    def __init__(self, available: bool) -> None:
        self.available = available
        self.empty_cache_calls = 0

    def is_available(self) -> bool:
        return self.available

    def empty_cache(self) -> None:
        self.empty_cache_calls += 1


class FakeMps:
    def __init__(self, available: bool) -> None:
        self.available = available

    def is_available(self) -> bool:
        return self.available


class FakeBackends:
    def __init__(self, mps: bool) -> None:
        self.mps = FakeMps(mps)


class FakeTorch:
    """The torch surface the adapter touches: cuda, backends.mps, manual_seed, inference_mode."""

    def __init__(self, *, cuda: bool = True, mps: bool = False) -> None:
        self.cuda = FakeCuda(cuda)
        self.backends = FakeBackends(mps)
        self.seeds: list[int] = []
        self.in_inference_mode = False
        self.log: list[str] = []

    def manual_seed(self, seed: int) -> None:
        self.seeds.append(seed)
        self.log.append(f"seed:{seed}")

    @contextlib.contextmanager
    def inference_mode(self) -> Any:
        self.in_inference_mode = True
        try:
            yield
        finally:
            self.in_inference_mode = False


class FakeChatterboxTTS:
    """``ChatterboxTTS``-shaped: ``sr = 24000``, ``from_local``/``from_pretrained``, ``generate``.

    ``generate`` returns a ``[1, n]`` tensor-like: a tone 0.35 s per word. Class
    attributes configure failures and collect every instance and call.
    """

    sr = 24000
    instances: list[FakeChatterboxTTS] = []
    torch: FakeTorch | None = None
    fail_load: Exception | None = None
    fail_generate: Exception | None = None

    def __init__(self, source: str, device: str) -> None:
        self.source = source
        self.device = device
        self.conds: Any = object()
        self.calls: list[dict[str, Any]] = []
        FakeChatterboxTTS.instances.append(self)

    @classmethod
    def reset(cls, torch: FakeTorch) -> None:
        cls.instances = []
        cls.torch = torch
        cls.fail_load = None
        cls.fail_generate = None

    @classmethod
    def from_local(cls, ckpt_dir: str | Path, device: str) -> FakeChatterboxTTS:
        if cls.fail_load is not None:
            raise cls.fail_load
        return cls(f"local:{ckpt_dir}", device)

    @classmethod
    def from_pretrained(cls, device: str) -> FakeChatterboxTTS:
        if cls.fail_load is not None:
            raise cls.fail_load
        return cls("hub", device)

    def generate(self, text: str, repetition_penalty: float = 1.2, min_p: float = 0.05,
                 top_p: float = 1.0, audio_prompt_path: str | None = None, exaggeration: float = 0.5,
                 cfg_weight: float = 0.5, temperature: float = 0.8) -> FakeTensor:
        torch = FakeChatterboxTTS.torch
        self.calls.append({
            "text": text, "audio_prompt_path": audio_prompt_path, "exaggeration": exaggeration,
            "cfg_weight": cfg_weight, "temperature": temperature,
            "inference_mode": bool(torch and torch.in_inference_mode),
            "seed": torch.seeds[-1] if torch and torch.seeds else None,
        })
        if FakeChatterboxTTS.fail_generate is not None:
            raise FakeChatterboxTTS.fail_generate
        n = int(self.sr * 0.35 * max(1, len(text.split())))
        t = np.arange(n, dtype=np.float32) / self.sr
        wav = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t)))
        return FakeTensor(wav.astype(np.float32)[None, :])


def install(monkeypatch: Any, *, cuda: bool = True, mps: bool = False) -> FakeTorch:
    """Point the chatterbox adapter's loader hooks at the doubles; returns the fake torch."""
    from ai_content_pipeline.backends import chatterbox

    torch = FakeTorch(cuda=cuda, mps=mps)
    FakeChatterboxTTS.reset(torch)
    monkeypatch.setattr(chatterbox, "_import_engine", lambda: (FakeChatterboxTTS, torch))
    monkeypatch.setattr(chatterbox, "_import_torch", lambda: torch)
    return torch


def make_checkpoint(folder: Path, *, skip: str | None = None) -> Path:
    """A checkpoint folder with the four files ``from_local`` reads (minus ``skip``)."""
    from ai_content_pipeline.backends.chatterbox import CHECKPOINT_FILES

    folder.mkdir(parents=True, exist_ok=True)
    for name in CHECKPOINT_FILES:
        if name != skip:
            (folder / name).write_bytes(b"x")
    return folder
