"""Run ``aicp-voice`` with the installed ``ChatterboxTTS`` watched (used by ``run_check.py``).

    python tests/chatterbox_real/spy_cli.py SPY.jsonl [aicp-voice options and files]

Calls ``ai_content_pipeline.cli.voice:main`` (what the ``aicp-voice`` console script
calls) in this process after wrapping, on the real ``chatterbox.tts.ChatterboxTTS`` class,
``from_local`` and ``generate``, and on each loaded model its watermarker's
``apply_watermark``. Nothing is replaced: every wrapper calls the library and returns what
it returned. One JSON line per observation goes to SPY.jsonl:

- ``from_local``: the arguments, the model's ``sr``, its classes and ``device``;
- ``generate``: text, keyword arguments, whether ``torch.inference_mode`` was on, the seed
  torch was last seeded with, and the returned value's type, shape and dtype;
- ``watermark``: the sample rate and length the watermarker was given;
- ``released``: the model object was garbage-collected (the adapter dropped every
  reference), with the events seen so far, so the order shows it happened before exit.
"""

from __future__ import annotations

import json
import sys
import time
import weakref
from typing import Any


def main() -> None:
    spy_path, argv = sys.argv[1], sys.argv[2:]
    t0 = time.perf_counter()
    log = open(spy_path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
    seen: list[str] = []

    def note(kind: str, **fields: Any) -> None:
        seen.append(kind)
        fields = {"kind": kind, "t": round(time.perf_counter() - t0, 3), **fields}
        log.write(json.dumps(fields, default=str) + "\n")
        log.flush()

    import torch
    from chatterbox.tts import ChatterboxTTS

    from_local = ChatterboxTTS.from_local.__func__  # type: ignore[attr-defined]
    generate = ChatterboxTTS.generate

    def spy_from_local(cls: type, ckpt_dir: Any, device: Any) -> Any:
        model = from_local(cls, ckpt_dir, device)
        note("from_local", ckpt_dir=str(ckpt_dir), device=device, cls=cls.__module__ + "." + cls.__name__,
             sr=model.sr, model_device=model.device, conds=model.conds is not None,
             t3=type(model.t3).__name__, s3gen=type(model.s3gen).__name__,
             watermarker=type(model.watermarker).__module__ + "." + type(model.watermarker).__name__)
        apply = model.watermarker.apply_watermark

        def spy_apply(wav: Any, sample_rate: int, **kw: Any) -> Any:
            out = apply(wav, sample_rate=sample_rate, **kw)
            note("watermark", sample_rate=sample_rate, n_in=len(wav), n_out=len(out))
            return out

        model.watermarker.apply_watermark = spy_apply
        weakref.finalize(model, lambda: note("released", after=list(seen)))
        return model

    def spy_generate(self: Any, text: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        inference = torch.is_inference_mode_enabled()
        out = generate(self, text, *args, **kwargs)
        note("generate", text=text, args=list(args), kwargs=kwargs, inference_mode=inference,
             seed=torch.initial_seed(), type=type(out).__module__ + "." + type(out).__name__,
             shape=list(out.shape), dtype=str(out.dtype), device=str(out.device),
             seconds=round(time.perf_counter() - started, 3))
        return out

    ChatterboxTTS.from_local = classmethod(spy_from_local)  # type: ignore[method-assign,assignment]
    ChatterboxTTS.generate = spy_generate  # type: ignore[method-assign]

    from ai_content_pipeline.cli.voice import main as aicp_voice

    sys.argv = ["aicp-voice", *argv]
    try:
        aicp_voice()
    finally:
        import gc

        gc.collect()
        note("exit")


if __name__ == "__main__":
    main()
