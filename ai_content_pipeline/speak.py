"""Trying voices: speak one line to a file (:func:`say_line`, ``aicp voices say``) and list the
voices the installed TTS backends offer (:func:`installed_voices`, ``aicp voices list``).

A line is voiced exactly as the voice stage voices a record's script (the same persona rule,
pronunciation lexicon, chunking, loudness and file checks), so what you hear is what a run
would write.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .errors import UsageError
from .events import Emitter
from .limits import AUDIO_FORMATS, AudioFormat

if TYPE_CHECKING:
    from .backends.base import TTSBackend


def installed_voices(folders: Iterable[str | os.PathLike[str]] = ()) -> Iterator[dict[str, Any]]:
    """The voices of every TTS backend whose ``list_voices`` capability
    (:class:`~ai_content_pipeline.backends.info.BackendInfo`) names any, in ``--backend``'s
    choice order: ``{"backend": NAME, "name", "voice", "source", "description", ...}``.

    :param folders: more folders to look for voice files in (Piper: ``*.onnx`` with ``.onnx.json``).
    """
    from .backends import registry

    folders = [str(f) for f in folders]
    for info in registry.backends("tts"):
        hook = info.load("list_voices")
        if hook is None:
            continue
        for voice in hook(folders=folders):
            yield {"backend": info.name, **voice}


def say_line(text: str, output: str | os.PathLike[str], *, backend: TTSBackend | Callable[[], TTSBackend], persona: str | None = None,
             lexicon: Iterable[str] = (), seed: int | None = None, overwrite: bool = False,
             emitter: Emitter | None = None) -> dict[str, Any]:
    """Speak ``text`` with ``backend`` (a :class:`~ai_content_pipeline.backends.base.TTSBackend`,
    or a function making one, called once the arguments and files are checked; loaded here and
    unloaded on return) into ``output``, whose suffix names the format (``.wav``,
    ``.flac``, ``.ogg``, ``.mp3``), loudness-normalised to -16 LUFS like ``aicp-voice``.

    :param persona: a persona name or file (its voice settings, seed and ``lexicon:``).
    :param lexicon: lexicon files over the user folder's and the persona's entries.
    :returns: the ``audio`` object the voice stage gives a record (path, seconds, ...) and
        ``lexicon``: the words of the entries that changed what was said.
    :raises UsageError: blank text, an unknown suffix, ``output`` exists without ``overwrite``,
        a missing persona or lexicon file. :raises ConfigError: an invalid one.
    :raises RecordError: the engine failed or the audio failed its checks.
    :raises BackendUnavailable: the backend cannot load.
    """
    from .stages.common import OverwriteRefused
    from .stages.voice import VoiceOptions, VoiceStage

    text = text.strip()
    if not text:
        raise UsageError("there is no text to say", hint='give it as the argument: aicp voices say "Hello there"')
    path = Path(output)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in AUDIO_FORMATS:
        raise UsageError(f"cannot tell the audio format of {path}",
                         hint=f"end the file name in one of: {', '.join('.' + f for f in AUDIO_FORMATS)}")
    if os.path.lexists(path) and not overwrite:
        raise OverwriteRefused(f"audio file {path} exists; not replaced",
                               hint="give --overwrite to replace it, or another -o FILE")
    options = VoiceOptions(out_dir=str(path.parent), format=cast(AudioFormat, fmt), persona=persona,
                           seed=seed, lexicon=tuple(str(f) for f in lexicon), overwrite=overwrite)
    if callable(backend) and not hasattr(backend, "synthesize"):  # a factory: the files first
        from .lexicon import RunLexicon
        from .templates import Personas, user_dir

        Personas(persona, required=False)
        RunLexicon(options.lexicon, user_dir() / "lexicon")
        tts = backend()
    else:
        tts = cast("TTSBackend", backend)
    stage = VoiceStage(tts, options, emitter)
    chosen = stage.personas.default
    voice = tts.default_voice(chosen, seed if seed is not None else (chosen.seed if chosen else None))
    words = stage.lexicon.for_persona(chosen)
    takes = tts.phonemes_for(voice)
    with stage.session:
        stage.session.ensure()
        audio = stage.synthesize(text, voice, path, stage.request_key(text, voice, path.name, words), words)
    return {**audio, "lexicon": [used[0] for used in words.used(text, takes)]}


__all__ = ["installed_voices", "say_line"]
