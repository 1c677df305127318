"""Public import path of the emitters: ``from ai_content_pipeline.cli.stream import StreamEmitter``.

The emitters live in :mod:`ai_content_pipeline.events` (the core does not import
click); this module re-exports them for existing user code.
"""

from ..events import (
    SCHEMA_VERSION,
    ConsoleEmitter,
    Emitter,
    NullEmitter,
    ProgressBarEmitter,
    StreamEmitter,
)

__all__ = ["SCHEMA_VERSION", "ConsoleEmitter", "Emitter", "NullEmitter", "ProgressBarEmitter", "StreamEmitter"]
