"""Chatterbox backend (``chatterbox-tts`` on PyTorch): the production voice, for a GPU.

An optional extra (``pip install 'ai_content_pipeline[chatterbox]'``): torch and
chatterbox are imported in :meth:`ChatterboxBackend.load` only (and torch in
:func:`detect_device` when called). Weights come from ``--checkpoint-dir``
(``ChatterboxTTS.from_local``: ``ve.safetensors``, ``t3_cfg.safetensors``,
``s3gen.safetensors``, ``tokenizer.json``, optionally ``conds.pt``) or the
model hub (``from_pretrained``). Output is 24,000 Hz mono. Generation runs
under ``torch.inference_mode()`` (GPU memory otherwise grows across calls);
``unload`` drops the model and empties the CUDA cache.

Tests replace the engine through :func:`_import_engine` and :func:`_import_torch`.
"""

from __future__ import annotations

import gc
import importlib.util
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import BackendOutOfMemory, BackendUnavailable, SynthesisError, UsageError
from ..faults import path_problem
from .base import TTSBackend, Voice
from .chatterbox_settings import SETTINGS
from .info import BackendInfo
from .settings import options_model

if TYPE_CHECKING:  # numpy is imported when speaking
    import numpy as np

CHECKPOINT_FILES = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json")
HUB_MODEL = "ResembleAI/chatterbox"
DEVICES = ("cuda", "mps", "cpu")
_GENERATE_KEYS = ("exaggeration", "cfg_weight", "temperature")
_DEFAULTS = {"exaggeration": 0.5, "cfg_weight": 0.5, "temperature": 0.8}
_OOM_HINT = ("free GPU memory (stop other models; `aicp run-chain` unloads the LLM first), "
             "or run with --device cpu (slow)")


#: The adapter's options model, built from its settings (:mod:`.chatterbox_settings`).
ChatterboxOptions = options_model("chatterbox", SETTINGS)

class ChatterboxVoiceSettings(BaseModel):
    """Chatterbox settings of a persona (``voice.chatterbox``); see ``ChatterboxTTS.generate``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no .inf/.nan from files

    audio_prompt: str | None = None
    exaggeration: float = Field(0.5, ge=0, le=2)
    cfg_weight: float = Field(0.5, ge=0, le=2)
    temperature: float = Field(0.8, gt=0, le=2)


def chatterbox_available() -> bool:
    """Whether ``chatterbox-tts`` is installed (checked without importing it)."""
    try:
        return importlib.util.find_spec("chatterbox") is not None
    except (ImportError, ValueError):
        return False


def _import_torch() -> Any | None:
    """``torch`` if it is installed, else ``None`` (imported on call only)."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch


def _import_engine() -> tuple[Any, Any]:
    """``(ChatterboxTTS class, torch module)``; the hook tests replace with doubles.

    :raises BackendUnavailable: the Perth watermarker every ``ChatterboxTTS`` builds
        cannot be imported (resemble-perth sets it to ``None`` when ``pkg_resources``,
        gone in setuptools 81, is missing; loading would then fail with a bare TypeError).
    """
    import perth
    import torch
    from chatterbox.tts import ChatterboxTTS

    if getattr(perth, "PerthImplicitWatermarker", None) is None:
        raise BackendUnavailable(
            "chatterbox-tts cannot build its watermarker: resemble-perth's PerthImplicitWatermarker "
            "did not import (it needs pkg_resources, which setuptools 81 removed)",
            hint="pip install 'setuptools<81' (the [chatterbox] extra pins it)")
    return ChatterboxTTS, torch


def detect_device() -> str:
    """The best device present: ``cuda``, then ``mps``, then ``cpu``.

    Imports torch only when installed and only when called.
    """
    torch = _import_torch()
    if torch is None:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(getattr(torch, "backends", None), "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def check_checkpoint_dir(path: str | Path) -> Path:
    """Return ``path`` when it holds every file ``from_local`` reads.

    :raises BackendUnavailable: naming the first missing file.
    """
    folder = Path(path)
    problem = path_problem(folder, want="directory")
    if problem is not None:
        raise BackendUnavailable(f"Chatterbox checkpoint folder {folder} {problem}",
                                 hint="pass --checkpoint-dir DIR holding the Chatterbox weights")
    for name in CHECKPOINT_FILES:
        if not (folder / name).is_file():
            raise BackendUnavailable(
                f"Chatterbox checkpoint file {folder / name} is missing",
                hint=f"--checkpoint-dir needs {', '.join(CHECKPOINT_FILES)} (and optionally conds.pt)",
            )
    return folder


def _is_oom(torch: Any, exc: BaseException) -> bool:
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    return (isinstance(oom, type) and isinstance(exc, oom)) or "out of memory" in str(exc).lower()


class ChatterboxBackend(TTSBackend):
    """Chatterbox TTS on torch.

    :param voice: a reference clip (``.wav`` etc.) to clone; wins over a persona's
        ``voice.chatterbox.audio_prompt``.
    :param device: ``cuda``, ``mps``, ``cpu``; ``None``/``auto`` picks with :func:`detect_device`.
    :param checkpoint_dir: local weights; ``None`` loads from the hub.
    :param exaggeration/cfg_weight/temperature: override the persona's settings.
    :raises UsageError: the reference clip does not exist (at construction).
    :raises BackendUnavailable: a checkpoint file is missing (at construction).
    """

    name = "chatterbox"
    max_chunk_chars = 300

    def __init__(self, voice: str | None = None, *, device: str | None = None,
                 checkpoint_dir: str | None = None, exaggeration: float | None = None,
                 cfg_weight: float | None = None, temperature: float | None = None, **_: Any) -> None:
        if voice is not None and Path(voice).suffix == ".onnx":
            raise UsageError(f"voice {voice} is a Piper voice, not a reference clip",
                             hint="use --backend piper for .onnx voices")
        if voice is not None and path_problem(voice) is not None:
            raise UsageError(f"reference voice {voice} {path_problem(voice)}",
                             hint="--voice takes an audio clip (a few seconds of clean speech) to clone")
        if device not in (None, "auto", *DEVICES):
            raise UsageError(f"unknown device '{device}'", hint=f"choose one of: auto, {', '.join(DEVICES)}")
        self.voice = voice
        self.explicit_voice = voice is not None
        self.requested_device = None if device in (None, "auto") else device
        self.checkpoint_dir = check_checkpoint_dir(checkpoint_dir) if checkpoint_dir else None
        self.overrides = {k: v for k, v in (("exaggeration", exaggeration), ("cfg_weight", cfg_weight),
                                            ("temperature", temperature)) if v is not None}
        self.model = str(self.checkpoint_dir) if self.checkpoint_dir else HUB_MODEL
        self.device = self.requested_device
        self.sample_rate = 24000
        self._model: Any = None
        self._torch: Any = None
        self._builtin_conds: Any = None  # the model's conds.pt voice, kept across cloned calls
        self._cloned = False  # model.conds holds a reference clip's voice, not the built-in one

    def load(self) -> None:
        """Import chatterbox and torch, pick the device, load the weights.

        :raises BackendUnavailable: not installed; hub unreachable (hint: --checkpoint-dir).
        :raises BackendOutOfMemory: the GPU has no room for the model.
        """
        if self.loaded:
            return
        try:
            engine, torch = _import_engine()
        except ImportError as exc:
            raise BackendUnavailable(
                f"chatterbox-tts is not installed ({exc})",
                hint="pip install 'ai_content_pipeline[chatterbox]' on a GPU host, or use --backend piper",
            ) from exc
        self._torch = torch
        self.device = self.requested_device or detect_device()
        try:
            if self.checkpoint_dir is not None:
                self._model = engine.from_local(self.checkpoint_dir, self.device)
            else:
                self._model = engine.from_pretrained(self.device)
        except Exception as exc:  # noqa: BLE001 - hub, file and CUDA errors of many types
            self._release()
            if _is_oom(torch, exc):
                raise BackendOutOfMemory(f"out of GPU memory loading Chatterbox on {self.device}",
                                         hint=_OOM_HINT) from exc
            where = self.checkpoint_dir or "the model hub"
            hint = ("download the weights once and pass --checkpoint-dir DIR"
                    if self.checkpoint_dir is None else "check the checkpoint files")
            raise BackendUnavailable(f"cannot load Chatterbox from {where}: {exc}", hint=hint) from exc
        self.sample_rate = int(self._model.sr)
        self._builtin_conds = getattr(self._model, "conds", None)
        self._cloned = False
        self.loaded = True

    def default_voice(self, persona: Any | None = None, seed: int | None = None) -> Voice:
        """Voice for ``persona``: its ``voice.chatterbox`` settings (audio_prompt,
        exaggeration, cfg_weight, temperature) under the command-line overrides;
        seed ``seed``, else the persona's fixed seed."""
        settings: dict[str, Any] = dict(_DEFAULTS)
        prompt = self.voice
        if persona is not None:
            cb = persona.voice.chatterbox
            settings.update({k: getattr(cb, k) for k in _GENERATE_KEYS})
            if prompt is None and cb.audio_prompt:
                path = Path(cb.audio_prompt).expanduser()
                if not path.is_absolute() and persona.source:  # relative to the persona file
                    path = Path(persona.source).parent / path
                prompt = str(path)
            if seed is None:
                seed = persona.seed
        settings.update(self.overrides)
        settings["audio_prompt"] = prompt
        name = Path(prompt).stem if prompt else "default"
        return Voice(name=name, settings=settings, seed=seed)

    def voice_installed(self, voice: Voice) -> bool:
        """Whether ``voice``'s reference clip (if any) is a readable file."""
        prompt = voice.settings.get("audio_prompt")
        return prompt is None or path_problem(prompt) is None

    def synthesize(self, text: str, voice: Voice) -> np.ndarray:
        """Speak ``text`` (one chunk, up to ~300 characters): float32 ``[n_samples]`` at 24 kHz.

        Seeds torch with ``voice.seed`` before the call, so a chunk sounds the
        same in every take. :raises BackendOutOfMemory: CUDA OOM (aborts the run).
        :raises SynthesisError: any other engine failure (per record).
        """
        if not self.loaded:
            self.load()
        torch = self._torch
        prompt = voice.settings.get("audio_prompt")
        if prompt is None and self._cloned:
            # generate(audio_prompt_path=...) leaves the clip's voice in model.conds
            # (prepare_conditionals) and later calls without one would speak with it
            self._model.conds = self._builtin_conds
            self._cloned = False
        if prompt is None and getattr(self._model, "conds", True) is None:
            raise SynthesisError("this Chatterbox checkpoint has no built-in voice (conds.pt)",
                                 hint="pass --voice REF.wav, or add conds.pt to --checkpoint-dir",
                                 stage="voice")
        if prompt is not None and path_problem(prompt) is not None:
            raise SynthesisError(f"reference voice {prompt} {path_problem(prompt)}", stage="voice")
        if voice.seed is not None:
            torch.manual_seed(int(voice.seed))
        kwargs = {k: float(voice.settings.get(k, _DEFAULTS[k])) for k in _GENERATE_KEYS}
        if prompt is not None:
            self._cloned = True
        try:
            with torch.inference_mode():
                wav = self._model.generate(text, audio_prompt_path=prompt, **kwargs)
                if hasattr(wav, "detach"):
                    wav = wav.detach().cpu()
        except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError subclasses
            if _is_oom(torch, exc):
                self._empty_cache()
                raise BackendOutOfMemory(f"out of GPU memory generating speech on {self.device}",
                                         hint=_OOM_HINT) from exc
            raise SynthesisError(f"Chatterbox failed: {exc}", stage="voice") from exc
        return _to_numpy(wav)

    def _empty_cache(self) -> None:
        torch = self._torch
        if torch is not None and self.device == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _release(self) -> None:
        self._model = None
        self._builtin_conds = None
        gc.collect()
        self._empty_cache()

    def unload(self) -> None:
        """Drop the model and empty the CUDA cache (memory free on return)."""
        self._release()
        self.loaded = False


def _to_numpy(wav: Any) -> np.ndarray:
    """A ``[1, n]`` (or ``[n]``) tensor → float32 ``[n]`` (see :func:`audio.as_mono_float32`)."""
    from ..audio import as_mono_float32

    if hasattr(wav, "detach"):
        wav = wav.detach()
    if hasattr(wav, "cpu"):
        wav = wav.cpu()
    if hasattr(wav, "numpy"):
        wav = wav.numpy()
    return as_mono_float32(wav)


def check() -> dict[str, Any]:
    """``aicp doctor``'s ``chatterbox`` check: ``chatterbox-tts`` importable (nothing imported)."""
    from .checkup import installed, result

    ok, ver = installed("chatterbox", "chatterbox-tts")
    return result(ok, "on a GPU host: pip install 'ai_content_pipeline[chatterbox]'", version=ver)


def check_cuda() -> dict[str, Any]:
    """``aicp doctor``'s ``cuda`` check: a CUDA GPU that torch can use (imports torch only when
    installed)."""
    from .checkup import installed, result

    ok_torch, ver = installed("torch", "torch")
    nvidia_smi = shutil.which("nvidia-smi")
    if not ok_torch:
        return result(False, "no torch installed: Chatterbox needs a CUDA build of torch "
                      "(pip install 'ai_content_pipeline[chatterbox]')", torch=None,
                      nvidia_smi=nvidia_smi, devices=[])
    try:
        import torch

        available = bool(torch.cuda.is_available())
        devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if available else []
        cuda_build = getattr(torch.version, "cuda", None)
    except Exception as exc:  # noqa: BLE001 - a broken torch is a finding, not a crash
        return result(False, f"torch failed to import: {exc}", torch=ver, nvidia_smi=nvidia_smi, devices=[])
    hint = ("this torch is a CPU build: install a CUDA build" if cuda_build is None
            else "no GPU visible: check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES")
    return result(available, hint, torch=ver, torch_cuda=cuda_build, nvidia_smi=nvidia_smi, devices=devices)


def _doctor(**_: Any) -> dict[str, Any]:
    engine, cuda = check(), check_cuda()
    return {"checks": {"chatterbox": engine, "cuda": cuda}, "usable": engine["ok"] and cuda["ok"]}


def _auto(device: str | None = None, **_: Any) -> bool:
    """``--backend auto`` picks Chatterbox when it is installed and a GPU is there."""
    return chatterbox_available() and (device or detect_device()) in ("cuda", "mps")


def _preflight(checkpoint_dir: str | None = None, **_: Any) -> None:
    """chatterbox-tts installed and a given ``checkpoint_dir`` complete (nothing loaded).

    :raises BackendUnavailable: either is not so (exit 4).
    """
    if not chatterbox_available():
        raise BackendUnavailable("chatterbox-tts is not installed",
                                 hint="pip install 'ai_content_pipeline[chatterbox]' on the GPU host")
    if checkpoint_dir:
        check_checkpoint_dir(checkpoint_dir)


def list_voices(folders: Any = ()) -> list[dict[str, Any]]:
    """What Chatterbox offers when installed (``[]`` when not; nothing imported): the model's
    built-in voice and a clone of any reference clip (``audio_prompt``)."""
    if not chatterbox_available():
        return []
    return [
        {"name": "default", "voice": None, "source": "builtin",
         "description": "the checkpoint's built-in voice (conds.pt)"},
        {"name": "clone", "voice": None, "source": "audio_prompt",
         "description": "clone from audio_prompt: --voice REF.wav, or a persona's voice.chatterbox.audio_prompt "
                        "(a few seconds of clean speech)"},
    ]


BACKEND = BackendInfo(
    name="chatterbox", kind="tts", adapter=ChatterboxBackend, settings=SETTINGS,
    persona_voice=ChatterboxVoiceSettings, voice_file="audio_prompt", doctor=_doctor, auto=_auto,
    persona_voice_name=lambda block: block.audio_prompt if block is not None else None,
    preflight=_preflight, list_voices=list_voices,
    priority=20, summary="chatterbox-tts on torch: the GPU voice, 24,000 Hz, voice cloning (optional extra)",
)
