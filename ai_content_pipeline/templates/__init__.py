"""Templates and personas: YAML data files, validated with pydantic, rendered with Jinja2.

The package's modules, each with one job: :mod:`.models` (the pydantic models of template and
persona files, prompt rendering, the reserved prompt-context names), :mod:`.store` (finding,
loading, listing and creating the files: built-in and user folders), :mod:`.personas` (a run's
persona lookup and the voice settings a script record carries) and :mod:`.sandbox` (the
bounded Jinja2 sandbox that renders prompts). This module re-exports their public names.
"""

from __future__ import annotations

from ..backends.voices import VoiceSettings
from .models import MAX_PROMPT_CHARS as MAX_PROMPT_CHARS  # the prompt limit, for callers
from .models import (
    MAX_TARGET_WORDS,
    RESERVED_CONTEXT,
    ExtraContext,
    Persona,
    PersonaVoice,
    Section,
    Template,
    TemplateLimitError,
    TemplateSandboxError,
    as_data,
    check_extra_context,
    extra_context_problem,
)
from .personas import (
    DEFAULT_PERSONA,
    Personas,
    persona_from_voice,
    persona_voice,
    record_voice_file,
)
from .store import (
    file_ref,
    is_name,
    list_personas,
    list_templates,
    load_persona,
    load_template,
    names,
    new_file,
    origin_of,
    user_dir,
    user_folder,
)

__all__ = [
    "DEFAULT_PERSONA", "ExtraContext", "MAX_TARGET_WORDS", "RESERVED_CONTEXT", "Persona",
    "PersonaVoice", "Section", "Template", "TemplateLimitError", "TemplateSandboxError", "VoiceSettings",
    "as_data", "check_extra_context", "extra_context_problem", "file_ref", "is_name", "list_personas",
    "list_templates", "load_persona", "load_template", "names", "new_file", "origin_of",
    "Personas", "persona_from_voice", "persona_voice", "record_voice_file", "user_dir",
    "user_folder",
]
