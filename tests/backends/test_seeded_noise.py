"""Piper's noise comes from the take's seed: the same text, voice and seed give the same samples
bit for bit, whatever ran before and in any process; another seed gives another take."""

from __future__ import annotations

import numpy as np
import pytest

from ai_content_pipeline.backends.base import Voice
from ai_content_pipeline.backends.piper import (
    SEED_INPUT,
    PiperBackend,
    bundled_voice_paths,
    seeded_graph,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
needs_voice = pytest.mark.skipif(bundled_voice_paths() is None, reason="the bundled Piper voice is not installed")


def _random_model(path, *, mean=1.0, scale=2.0) -> None:
    """A graph whose output is RandomNormalLike of its input (as Piper's noise is made)."""
    from onnx import TensorProto, helper

    node = helper.make_node("RandomNormalLike", ["x"], ["y"], dtype=TensorProto.FLOAT, mean=mean, scale=scale)
    graph = helper.make_graph([node], "noise", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]), str(path))


def test_the_seeded_graph_draws_gaussian_noise_from_its_seed(tmp_path) -> None:
    path = tmp_path / "noise.onnx"
    _random_model(path)
    seeded = seeded_graph(path)
    assert seeded is not None
    model = onnx.load_from_string(seeded)
    assert not [n for n in model.graph.node if n.op_type.startswith("Random")]
    assert SEED_INPUT in [i.name for i in model.graph.input]
    session = ort.InferenceSession(seeded, providers=["CPUExecutionProvider"])
    x = np.zeros((192, 1000), dtype=np.float32)

    def draw(seed: int) -> np.ndarray:
        return session.run(None, {"x": x, SEED_INPUT: np.array(seed, dtype=np.int64)})[0]

    one, other = draw(7), draw(8)
    assert one.shape == x.shape
    assert np.array_equal(one, draw(7)) and not np.array_equal(one, other)
    assert abs(float(one.mean()) - 1.0) < 0.05 and abs(float(one.std()) - 2.0) < 0.05  # mean and scale kept
    z = (one.ravel() - 1.0) / 2.0
    assert abs(float(np.corrcoef(z[:-1], z[1:])[0, 1])) < 0.02  # neighbours independent
    assert abs(float(np.corrcoef(z, (other.ravel() - 1.0) / 2.0)[0, 1])) < 0.02  # seeds independent
    assert 0.99 < float(np.mean(np.abs(z) < 2.576)) / 0.99 < 1.01  # Gaussian tails


def test_a_graph_without_random_operators_is_left_as_it_is(tmp_path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "plain.onnx"))
    assert seeded_graph(tmp_path / "plain.onnx") is None


@needs_voice
def test_piper_gives_the_same_take_for_the_same_seed_in_any_order() -> None:
    text = "Turn it up! Here is Billie Jean by Michael Jackson."
    first, second = PiperBackend(), PiperBackend()
    try:
        one = first.synthesize(text, Voice(name="joe", seed=2202))
        other = first.synthesize(text, Voice(name="joe", seed=2203))
        again = first.synthesize(text, Voice(name="joe", seed=2202))  # after another take
        fresh = second.synthesize(text, Voice(name="joe", seed=2202))  # another session
    finally:
        first.unload()
        second.unload()
    assert one.tobytes() == again.tobytes() == fresh.tobytes()
    assert one.shape != other.shape or not np.array_equal(one, other)
