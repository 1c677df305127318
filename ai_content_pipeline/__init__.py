"""ai_content_pipeline (aicp): JSON Lines records → LLM-written scripts → TTS speech.

Public API (no heavy imports here; engines load with their backends):

- :class:`~ai_content_pipeline.stages.script.ScriptStage`, :func:`~ai_content_pipeline.stages.commands.run_script`
- :func:`~ai_content_pipeline.backends.registry.create_llm`, :func:`~ai_content_pipeline.backends.registry.create_tts`
- :class:`~ai_content_pipeline.events.StreamEmitter`, :class:`~ai_content_pipeline.events.NullEmitter`
- :class:`~ai_content_pipeline.errors.AicpError`, :class:`~ai_content_pipeline.status.ExitStatus`
"""

from .errors import AicpError
from .events import NullEmitter, StreamEmitter
from .status import ExitStatus

__version__ = "0.1.0"

__all__ = ["AicpError", "ExitStatus", "NullEmitter", "StreamEmitter", "__version__"]
