"""The settings of the ``chatterbox`` backend (:mod:`.chatterbox`) as plain data, light enough
for ``--help`` (see :mod:`.settings`)."""

from __future__ import annotations

from ..limits import CFG_WEIGHT, EXAGGERATION, VOICE_TEMPERATURE
from .settings import Setting

SETTINGS = (
    Setting("voice", "path", flag="--voice", metavar="PATH", help="a reference clip to clone (.wav)."),
    Setting("device", choices=("auto", "cuda", "mps", "cpu"), default="auto", unset="auto", flag="--device",
            show_default=True, help="the torch device (auto: cuda, then mps, then cpu)."),
    Setting("checkpoint_dir", "folder", flag="--checkpoint-dir", metavar="DIR", operator=True,
            help="local weights (ve.safetensors, t3_cfg.safetensors, s3gen.safetensors, tokenizer.json) "
                 "[default: the model hub]."),
    Setting("exaggeration", "float", limit=EXAGGERATION, flag="--exaggeration",
            help="emotion intensity [persona/0.5]."),
    Setting("cfg_weight", "float", limit=CFG_WEIGHT, flag="--cfg-weight",
            help="classifier-free guidance [persona/0.5]."),
    Setting("temperature", "float", limit=VOICE_TEMPERATURE, flag="--temperature",
            help="sampling temperature [persona/0.8]."),
)
