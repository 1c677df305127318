"""The AI-radio batch API end to end: SmolLM2-135M on llama.cpp, then the bundled Piper voice."""

from __future__ import annotations

import pytest
import soundfile as sf

from ai_content_pipeline.radio import GenerationPipeline, generate_batch_intros
from tests.doubles import RecordingEmitter

pytestmark = pytest.mark.e2e

SONGS = [
    {"id": "queen-bohemian", "artist": "Queen", "title": "Bohemian Rhapsody", "year": 1975},
    {"id": "aha-take-on-me", "artist": "a-ha", "title": "Take On Me", "dj": "max"},
]


def test_two_intros_on_the_embedded_backends(tmp_path):
    em = RecordingEmitter()
    pipeline = GenerationPipeline(tmp_path, llm_backend="llamacpp", tts_backend="piper", seed=7,
                                  max_tokens=60, emitter=em)
    updates = []
    results = list(generate_batch_intros(pipeline, SONGS, progress_callback=updates.append))
    assert [(r.song_id, r.dj) for r in results] == [("queen-bohemian", "julie"), ("aha-take-on-me", "max")]
    for r in results:
        assert r.success, r.error
        assert r.audio_path == tmp_path / "intros" / f"{r.song_id}_{r.dj}_0.wav"
        info = sf.info(str(r.audio_path))
        words = len(r.text.split())
        assert info.samplerate == 22050 and info.channels == 1
        assert words >= 5 and words / 5.0 <= info.duration <= words / 0.5 + 2.0
    assert updates[-1].completed == updates[-1].total == 2
    assert not pipeline._llm_loaded and not pipeline._tts_loaded
    models = [(n, f["backend"]) for n, f in em.events if n.startswith("model_")]
    assert models == [("model_load", "llamacpp"), ("model_unload", "llamacpp"),
                      ("model_load", "piper"), ("model_unload", "piper")]

    # resume: both files exist, so no model loads at all
    em.events.clear()
    again = list(generate_batch_intros(pipeline, SONGS, resume=True))
    assert all(r.skipped and r.success for r in again)
    assert not [n for n, _ in em.events if n.startswith("model_")]

