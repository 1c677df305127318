"""Voicing a dialogue: each turn of ``script.turns`` with its host's persona voice, joined with
short gaps of silence and fades, ``audio.turns`` giving where each turn lies in the file,
``--captions vtt|srt`` beside the audio, a ledger key that follows the turns and the hosts'
voices, and a warning when a backend gives every host one voice."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import orjson
import pytest
import soundfile as sf
import webvtt

from ai_content_pipeline.backends.base import Voice
from ai_content_pipeline.cli import voice as voice_cli
from ai_content_pipeline.ledger import Ledger
from ai_content_pipeline.stages.voice import VoiceOptions, VoiceStage
from ai_content_pipeline.templates import load_persona, persona_voice
from ai_content_pipeline.turns import GAP_RANGE, captions, faded, join_turns, turn_gaps
from tests.cli_helpers import invoke
from tests.doubles import RecordingEmitter, SpeechTTS, lines_of

#: pitch of each Kokoro voice the double "has"; any other voice is 220 Hz
PITCH = {"jf_gongitsune": 330.0, "jm_kumo:0.8,jf_alpha:0.2": 140.0}
EDGE = 0.2  # seconds of silence the double puts before and after what it says


class HostTTS(SpeechTTS):
    """A voice per persona: the persona's ``voice.kokoro.voice`` picks the pitch, its ``speed``
    is a setting; each call is padded with :data:`EDGE` seconds of silence, as engines do."""

    name = "hosts"

    def __init__(self, *, levels: dict[str, float] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.levels = levels or {}  # voice name → amplitude factor: engines speak at different levels

    def default_voice(self, persona: Any | None = None, seed: int | None = None) -> Voice:
        kokoro = persona.voice.kokoro if persona is not None else None
        name = (kokoro.voice if kokoro is not None else None) or "plain"
        return Voice(name=name, settings={"speed": kokoro.speed if kokoro is not None else None}, seed=seed)

    def synthesize(self, text: str, voice: Voice) -> np.ndarray:
        self.calls.append((text, voice))
        n = int(self.sample_rate * self.seconds_per_word * max(1, len(text.split())))
        t = np.arange(n, dtype=np.float32) / self.sample_rate
        level = 0.3 * self.levels.get(voice.name, 1.0)
        tone = level * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * PITCH.get(voice.name, 220.0) * t)
        pad = np.zeros(int(EDGE * self.sample_rate), dtype=np.float32)
        return np.concatenate([pad, tone.astype(np.float32), pad])


TURNS = [
    {"speaker": "sam", "text": "Welcome back to the show, today we talk about tides."},
    {"speaker": "julie", "text": "I love the sea at night, it sounds so calm."},
    {"speaker": "sam", "text": "The moon pulls the water twice a day."},
]


def dialogue(rid: str = "d1", turns: list[dict[str, str]] | None = None, take: int = 0,
             hosts_voice: dict[str, Any] | None = None) -> dict[str, Any]:
    turns = turns or TURNS
    labels = {"sam": "Sam", "julie": "Julie"}
    return {"id": rid, "topic": "tides", "script": {
        "text": "\n".join(f"{labels.get(t['speaker'], t['speaker'])}: {t['text']}" for t in turns),
        "persona": "sam", "persona_voice": persona_voice(load_persona("sam")), "take": take,
        "turns": turns, "hosts": ["sam", "julie"],
        "hosts_voice": hosts_voice or {n: persona_voice(load_persona(n)) for n in ("sam", "julie")}}}


def run(records: list[dict[str, Any]], tmp_path, tts=None, **options: Any) -> tuple[list[dict], RecordingEmitter]:
    emitter = RecordingEmitter()
    ledger = options.pop("ledger", None)
    stage = VoiceStage(tts or HostTTS(), VoiceOptions(out_dir=str(tmp_path / "audio"), **options), emitter,
                       ledger=ledger)
    return list(stage.run(lines_of(*records))), emitter


def warnings(emitter: RecordingEmitter) -> list[str]:
    return [f["message"] for e, f in emitter.events if e == "message" and f.get("level") == "warning"]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def seconds(stamp: str) -> float:
    """``HH:MM:SS.mmm`` (as webvtt-py gives a cue's start and end) in seconds."""
    h, m, s = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def pitch(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


def test_each_turn_is_voiced_by_its_host_and_the_timings_match_the_file(tmp_path) -> None:
    [out], emitter = run([dialogue()], tmp_path)
    audio = out["audio"]
    assert "error" not in out
    assert [t["speaker"] for t in audio["turns"]] == ["sam", "julie", "sam"]
    samples, rate = sf.read(audio["path"], dtype="float32")
    assert abs(len(samples) / rate - audio["turns"][-1]["end"]) < 0.002  # the file ends with the last turn
    assert audio["turns"][0]["start"] == 0.0
    level = max(rms(samples[int(t["start"] * rate):int(t["end"] * rate)]) for t in audio["turns"])
    for turn in audio["turns"]:  # speech inside, in the host's voice
        inside = samples[int(turn["start"] * rate):int(turn["end"] * rate)]
        assert rms(inside) > 0.3 * level
        assert abs(pitch(inside, rate) - {"sam": 140.0, "julie": 330.0}[turn["speaker"]]) < 10
    for a, b in zip(audio["turns"], audio["turns"][1:], strict=False):  # silence between, a natural gap
        gap = samples[int(a["end"] * rate) + 1:int(b["start"] * rate) - 1]
        assert GAP_RANGE[0] - 0.002 <= b["start"] - a["end"] <= GAP_RANGE[1] + 0.002
        assert len(gap) and float(np.max(np.abs(gap))) < 1e-4
    assert audio["voices"] == {"sam": {"backend": "hosts", "voice": "jm_kumo:0.8,jf_alpha:0.2"},
                               "julie": {"backend": "hosts", "voice": "jf_gongitsune"}}
    assert audio["loudness_lufs"] is not None and abs(audio["loudness_lufs"] + 16) < 1  # normalized as a whole
    assert not any("share one voice" in w for w in warnings(emitter))
    [complete] = [f for e, f in emitter.events if e == "record_complete"]
    assert complete["turns"] == 3


def test_the_joins_fade_to_silence_so_nothing_clicks() -> None:
    rate = 16000
    loud = np.full(rate // 2, 0.5, dtype=np.float32)  # a turn that would start and stop at full level
    samples, spans = join_turns([loud, loud], rate, [0.3])
    for start, end in spans:
        a, b = int(round(start * rate)), int(round(end * rate))
        assert abs(samples[a]) < 1e-3 and abs(samples[b - 1]) < 1e-3
    assert float(np.max(np.abs(np.diff(samples)))) < 0.5 * 0.01  # no step larger than a ramp's
    assert np.all(faded(loud, rate)[[0, -1]] == 0)


def test_the_gaps_are_drawn_from_the_take_seed() -> None:
    gaps = turn_gaps(40, "3303:0")
    assert len(gaps) == 39 and all(GAP_RANGE[0] <= g <= GAP_RANGE[1] for g in gaps)
    assert len(set(gaps)) > 10  # varied, not one fixed pause
    assert turn_gaps(40, "3303:0") == gaps and turn_gaps(40, "3303:1") != gaps


@pytest.mark.parametrize("fmt", ["vtt", "srt"])
def test_captions_are_written_beside_the_audio_and_parse(tmp_path, fmt) -> None:
    [out], _ = run([dialogue()], tmp_path, captions=fmt)
    audio = out["audio"]
    assert audio["captions"] == audio["path"].removesuffix(".wav") + f".{fmt}"
    parsed = list(webvtt.read(audio["captions"]) if fmt == "vtt" else webvtt.from_srt(audio["captions"]))
    assert len(parsed) == 3
    for cue, turn, spoken in zip(parsed, audio["turns"], TURNS, strict=True):
        assert abs(seconds(cue.start) - turn["start"]) < 0.002 and abs(seconds(cue.end) - turn["end"]) < 0.002
        label = {"sam": "Sam", "julie": "Julie"}[turn["speaker"]]
        if fmt == "vtt":
            assert cue.voice == label and cue.text == spoken["text"]
        else:
            assert cue.text == f"{label}: {spoken['text']}"


def test_vtt_captions_escape_markup_in_the_text() -> None:
    text = captions([("Sam", 0.0, 1.5, "Tom & Jerry <3"), (None, 1.5, 3723.25, "plain")], "vtt")
    assert "<v Sam>Tom &amp; Jerry &lt;3</v>" in text
    assert "01:02:03.250" in text and text.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.500\n")


def test_a_one_voice_take_gets_one_caption(tmp_path) -> None:
    [out], _ = run([{"id": "s1", "script": {"text": "Good evening, night owls. Here is Queen.", "persona": "julie",
                                            "persona_voice": persona_voice(load_persona("julie")), "take": 0}}],
                   tmp_path, tts=SpeechTTS(), captions="vtt")
    [cue] = list(webvtt.read(out["audio"]["captions"]))
    assert cue.voice == "Julie" and cue.text == "Good evening, night owls. Here is Queen."
    assert "turns" not in out["audio"]


def test_the_key_follows_the_turns_and_each_host_voice(tmp_path) -> None:
    ledger = Ledger(tmp_path / "voice.ledger")
    [first], _ = run([dialogue()], tmp_path, ledger=ledger)
    [again], _ = run([dialogue()], tmp_path, ledger=ledger, resume=True)
    assert again["audio"]["key"] == first["audio"]["key"] and again["audio"].get("skipped") is True
    assert again["audio"]["turns"] == first["audio"]["turns"]  # the ledger keeps the timings
    voices = {n: persona_voice(load_persona(n)) for n in ("sam", "julie")}
    voices["julie"]["kokoro"] = {"voice": "jf_gongitsune", "speed": 1.2}  # julie speaks faster
    tts = HostTTS()
    [faster], _ = run([dialogue(hosts_voice=voices)], tmp_path, tts=tts, ledger=ledger, resume=True)
    assert faster["audio"]["key"] != first["audio"]["key"] and "skipped" not in faster["audio"]
    assert {c[1].settings["speed"] for c in tts.calls if c[1].name == "jf_gongitsune"} == {1.2}
    turns = [dict(t) for t in TURNS]
    turns[1]["text"] = "I love the sea at dawn, it sounds so calm."
    [edited], _ = run([dialogue(turns=turns)], tmp_path, ledger=ledger, resume=True)
    assert edited["audio"]["key"] not in {first["audio"]["key"], faster["audio"]["key"]}


def test_a_backend_with_one_voice_warns_once_and_still_voices(tmp_path) -> None:
    outs, emitter = run([dialogue("d1"), dialogue("d2")], tmp_path, tts=SpeechTTS())
    assert all("error" not in o and len(o["audio"]["turns"]) == 3 for o in outs)
    shared = [w for w in warnings(emitter) if "hosts share one voice" in w]
    assert len(shared) == 1 and "sam, julie" in shared[0]


def test_a_turn_speaker_with_no_persona_is_the_record_error(tmp_path) -> None:
    turns = [*TURNS, {"speaker": "nobody-here", "text": "Hello."}]
    [out], _ = run([dialogue(turns=turns)], tmp_path)
    assert out["error"]["stage"] == "voice" and "nobody-here" in out["error"]["message"]
    assert not os.path.exists(tmp_path / "audio" / "d1_sam_0.wav")


def test_the_cli_writes_captions_and_turns(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(voice_cli, "create_tts", lambda name, notice=None, **_: HostTTS())
    res = invoke(voice_cli.voice_command, "aicp-voice",
                 ["--out-dir", str(tmp_path / "a"), "--captions", "srt", "--sample-rate", "24000"],
                 orjson.dumps(dialogue()) + b"\n")
    assert res.exit_code == 0, res.stderr
    audio = orjson.loads(res.stdout)["audio"]
    assert audio["captions"].endswith("d1_sam_0.srt") and audio["sample_rate"] == 24000
    assert [c.text.split(":")[0] for c in webvtt.from_srt(audio["captions"])] == ["Sam", "Julie", "Sam"]
    bad = invoke(voice_cli.voice_command, "aicp-voice", ["--captions", "txt"], b"")
    assert bad.exit_code == 2 and "txt" in bad.stderr and bad.stdout == ""


def test_a_chain_voice_step_takes_captions(tmp_path) -> None:
    from click.testing import CliRunner

    from ai_content_pipeline.cli.errors import run_cli
    from ai_content_pipeline.cli.main import cli
    from tests.chain_doubles import write_chain

    def dry_run(*extra: str) -> tuple[int, str, str]:
        with CliRunner().isolation() as (out, err, _):
            code = run_cli(cli, "aicp", ["run-chain", "--config", str(write_chain(tmp_path)), "--dry-run", *extra])
        return code, out.getvalue().decode(), err.getvalue().decode()

    code, _, err = dry_run("--set", "steps.1.params.captions=vtt")
    assert code == 0, err
    code, out, err = dry_run("--set", "steps.1.params.captions=txt")
    assert code == 2 and out == "" and "steps.1.params.captions" in err


def test_another_text_field_voices_one_text_with_one_voice(tmp_path) -> None:
    record = {**dialogue(), "text": "A plain note to read in one voice."}
    tts = HostTTS()
    [out], _ = run([record], tmp_path, tts=tts, text_field="text")
    assert "turns" not in out["audio"] and [c[0] for c in tts.calls] == [record["text"]]


def test_an_existing_captions_file_is_not_replaced_without_overwrite(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(voice_cli, "create_tts", lambda name, notice=None, **_: HostTTS())
    out_dir = tmp_path / "a"
    out_dir.mkdir()
    (out_dir / "d1_sam_0.vtt").write_text("mine")
    args = ["--out-dir", str(out_dir), "--captions", "vtt"]
    res = invoke(voice_cli.voice_command, "aicp-voice", args, orjson.dumps(dialogue()) + b"\n")
    assert res.exit_code == 2 and "d1_sam_0.vtt" in res.stderr and res.stdout == ""
    assert (out_dir / "d1_sam_0.vtt").read_text() == "mine" and not (out_dir / "d1_sam_0.wav").exists()
    res = invoke(voice_cli.voice_command, "aicp-voice", [*args, "--overwrite"], orjson.dumps(dialogue()) + b"\n")
    assert res.exit_code == 0, res.stderr
    assert [c.voice for c in webvtt.read(str(out_dir / "d1_sam_0.vtt"))] == ["Sam", "Julie", "Sam"]


def test_hosts_spoken_at_different_levels_come_out_equally_loud(tmp_path) -> None:
    from ai_content_pipeline.audio import measure_loudness

    quiet = HostTTS(levels={"jf_gongitsune": 0.25})  # julie's engine 12 dB under sam's
    [out], _ = run([dialogue()], tmp_path, tts=quiet)
    samples, rate = sf.read(out["audio"]["path"], dtype="float32")
    level = {t["speaker"]: measure_loudness(samples[int(t["start"] * rate):int(t["end"] * rate)], rate)
             for t in out["audio"]["turns"]}
    assert abs(level["sam"] - level["julie"]) < 1.0, level
    [raw], _ = run([dialogue("d2")], tmp_path, tts=HostTTS(levels={"jf_gongitsune": 0.25}), loudness=None)
    samples, rate = sf.read(raw["audio"]["path"], dtype="float32")  # --no-normalize keeps the engines' levels
    turns = raw["audio"]["turns"]
    assert rms(samples[int(turns[0]["start"] * rate):int(turns[0]["end"] * rate)]) > 3 * rms(
        samples[int(turns[1]["start"] * rate):int(turns[1]["end"] * rate)])


def test_a_lexicon_entry_a_turn_uses_is_in_the_key_and_is_said(tmp_path) -> None:
    [plain], _ = run([dialogue()], tmp_path / "a")
    lexicon = tmp_path / "lexicon.yaml"
    lexicon.write_text("tides: tydz\n")
    tts = HostTTS()
    [said], _ = run([dialogue()], tmp_path / "b", tts=tts, lexicon=(str(lexicon),))
    assert said["audio"]["key"] != plain["audio"]["key"]
    assert any("tydz" in text for text, _ in tts.calls) and not any("tides" in text for text, _ in tts.calls)
