"""Build a Chatterbox checkpoint folder from the real model classes with random weights.

Run with the interpreter that has ``chatterbox-tts`` installed (``make test-chatterbox``
uses ``.venv-chatterbox``)::

    python tests/chatterbox_real/make_checkpoint.py OUT_DIR [--seed 0]

Writes what ``ChatterboxTTS.from_local`` reads (chatterbox-tts 0.1.7):

- ``ve.safetensors``: ``VoiceEncoder()``'s state dict;
- ``t3_cfg.safetensors``: ``T3()``'s (the English 520M Llama config);
- ``s3gen.safetensors``: ``S3Gen()``'s;
- ``tokenizer.json``: a character-level ``tokenizers`` BPE model holding the special
  tokens ``EnTokenizer`` asserts on (``[START]``, ``[STOP]``) and ``[SPACE]`` (it replaces
  every space with that), ids inside T3's text vocabulary (704), ``[STOP]`` = 0 and
  ``[START]`` = 255 as in ``T3Config`` (``stop_text_token``/``start_text_token``);
- ``conds.pt``: the built-in voice, made the way ``ChatterboxTTS.prepare_conditionals``
  makes one from a reference clip (``S3Gen.embed_ref``, the S3 tokenizer's prompt tokens,
  the voice encoder's speaker embedding), from a synthetic voiced clip (1 s by default), saved with
  chatterbox's own ``Conditionals(T3Cond(...), gen).save``.

Weights are the modules' own initialisation under ``torch.manual_seed(seed)``, so the
folder is the same on every run. Random weights speak noise; this checks shapes and
calls, never speech. Prints one JSON line describing what was written.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
import time
from pathlib import Path

#: T3Config.english_only(): text vocabulary size and the start/stop text token ids.
TEXT_VOCAB = 704
STOP_ID, START_ID = 0, 255


def tokenizer_json(path: Path) -> int:
    """Write a character-level tokenizer EnTokenizer accepts; returns the vocabulary size."""
    from tokenizers import AddedToken, Tokenizer
    from tokenizers.models import BPE

    specials = ["[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]
    vocab = {tok: i for i, tok in enumerate(specials)}  # [STOP] = 0 = T3's stop_text_token
    for ch in string.ascii_letters + string.digits + string.punctuation:
        vocab[ch] = len(vocab)
    assert len(vocab) < START_ID
    while len(vocab) < START_ID:  # no holes below [START] (tokenizers warns about them)
        vocab[f"[UNUSED{len(vocab)}]"] = len(vocab)
    vocab["[START]"] = START_ID  # = T3's start_text_token
    assert max(vocab.values()) < TEXT_VOCAB
    tok = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in vocab if t.startswith("[")])
    tok.save(str(path))
    return len(vocab)


def reference_clip(sr: int, seconds: float):
    """A voiced-sounding synthetic clip: a 140 Hz glottal-like harmonic series, syllable-rate
    amplitude modulation and a little noise (deterministic; float32 in [-1, 1])."""
    import numpy as np

    t = np.arange(int(sr * seconds)) / sr
    f0 = 140 + 15 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 16))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    noise = np.random.default_rng(0).standard_normal(t.size) * 0.01
    wav = voiced * envelope + noise
    return (0.5 * wav / np.max(np.abs(wav))).astype(np.float32)


def end_speech_after(t3, n_tokens: int, dim: int = 0, level: float = 30.0, gain: float = 5.0) -> None:
    """Make T3 emit its stop-speech token right after ``n_tokens`` speech tokens.

    With untouched random weights the stop token is as likely as any other of the 8194
    (about 1 in 8000 per step), so every call runs to ``generate``'s fixed
    ``max_new_tokens=1000`` (40 s of noise, many minutes on a CPU). One hidden dimension
    ``dim`` is reserved as a position signal: no layer writes to it (that row of every
    ``o_proj``/``down_proj`` is zero, so a position's value there is its own input's), no
    speech token embedding carries it, the learned speech position embedding carries
    ``level`` from position ``n_tokens + 1`` on,
    and the stop token's ``speech_head`` row reads it with weight ``gain``. Before that
    position the dimension is exactly 0, so sampling is the random model's own; from it on
    the stop logit leads by about ``gain * level / rms`` (~50) and min-p leaves only it.
    """
    import torch

    with torch.no_grad():
        for layer in t3.tfmr.layers:
            layer.self_attn.o_proj.weight[dim, :] = 0
            layer.mlp.down_proj.weight[dim, :] = 0
        t3.speech_emb.weight[:, dim] = 0  # the residual stream's `dim` is the position signal alone
        pos = t3.speech_pos_emb.emb.weight
        pos[:, dim] = 0
        pos[n_tokens + 1:, dim] = level
        t3.speech_head.weight[t3.hp.stop_speech_token, dim] = gain


def conditionals(t3, s3gen, ve, seconds: float):
    """``(T3Cond, gen dict)`` built as ``ChatterboxTTS.prepare_conditionals`` builds them from a
    reference clip, here the synthetic clip of :func:`reference_clip`."""
    import librosa
    import torch
    from chatterbox.models.s3gen import S3GEN_SR
    from chatterbox.models.s3tokenizer import S3_SR
    from chatterbox.models.t3.modules.cond_enc import T3Cond
    from chatterbox.tts import ChatterboxTTS

    wav24 = reference_clip(S3GEN_SR, seconds)
    wav16 = librosa.resample(wav24, orig_sr=S3GEN_SR, target_sr=S3_SR)
    with torch.inference_mode():
        gen = s3gen.embed_ref(wav24[:ChatterboxTTS.DEC_COND_LEN], S3GEN_SR, device="cpu")
        prompt, _ = s3gen.tokenizer.forward([wav16[:ChatterboxTTS.ENC_COND_LEN]],
                                            max_len=t3.hp.speech_cond_prompt_len)
        speaker = torch.from_numpy(ve.embeds_from_wavs([wav16], sample_rate=S3_SR))
    t3_cond = T3Cond(speaker_emb=speaker.mean(axis=0, keepdim=True),
                     cond_prompt_speech_tokens=torch.atleast_2d(prompt),
                     emotion_adv=0.5 * torch.ones(1, 1, 1))
    return t3_cond, gen


def save_state(module, path: Path) -> int:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
    save_file(state, str(path))
    return sum(v.numel() for v in state.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ref-seconds", type=float, default=1.0, metavar="S",
                        help="length of the synthetic reference clip behind conds.pt (S3Gen's "
                             "flow model runs over the prompt too: shorter is faster)")
    parser.add_argument("--speech-tokens", type=int, default=40, metavar="N",
                        help="T3 stops after N speech tokens (about N/25 s of audio); "
                             "0 keeps the random weights untouched (every call runs to 1000 tokens)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()

    import torch
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.tokenizers import EnTokenizer
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.tts import Conditionals

    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    info: dict = {"seed": args.seed, "torch": torch.__version__}
    steps: dict[str, float] = {"import": time.perf_counter() - t0}

    def lap(name: str) -> None:
        steps[name] = time.perf_counter() - t0 - sum(steps.values())

    ve = VoiceEncoder().eval()
    info["ve_params"] = save_state(ve, out / "ve.safetensors")
    lap("ve")
    t3 = T3().eval()
    if args.speech_tokens:
        end_speech_after(t3, args.speech_tokens)
    info["speech_tokens"] = args.speech_tokens or None
    assert t3.hp.text_tokens_dict_size == TEXT_VOCAB
    assert (t3.hp.start_text_token, t3.hp.stop_text_token) == (START_ID, STOP_ID)
    info["t3_params"] = save_state(t3, out / "t3_cfg.safetensors")
    lap("t3")
    s3gen = S3Gen().eval()
    info["s3gen_params"] = save_state(s3gen, out / "s3gen.safetensors")
    lap("s3gen")
    info["tokenizer_vocab"] = tokenizer_json(out / "tokenizer.json")
    ids = EnTokenizer(str(out / "tokenizer.json")).encode("Hello there, night owls!")
    assert ids and max(ids) < TEXT_VOCAB and 1 not in ids, ids  # no [UNK]

    t3_cond, gen = conditionals(t3, s3gen, ve, args.ref_seconds)
    Conditionals(t3_cond, gen).save(out / "conds.pt")
    lap("conds")
    info["conds"] = {
        "t3": {k: list(v.shape) for k, v in vars(t3_cond).items() if torch.is_tensor(v)},
        "gen": {k: list(v.shape) for k, v in gen.items() if torch.is_tensor(v)},
    }
    info["files"] = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    info["step_seconds"] = {k: round(v, 1) for k, v in steps.items()}
    info["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
