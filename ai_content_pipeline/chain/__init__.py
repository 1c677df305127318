"""Chains: a YAML file of steps (script → voice) run in one process, one model at a time.

- :func:`~ai_content_pipeline.chain.spec.load_chain`: YAML → validated :class:`~ai_content_pipeline.chain.spec.ChainSpec`
- :func:`~ai_content_pipeline.chain.runner.run_chain`: run it, events to an emitter
- :func:`~ai_content_pipeline.chain.runner.plan_chain`: the ``--dry-run`` plan
"""

from .runner import ChainResult, ChainRunner, plan_chain, run_chain
from .spec import ChainSpec, load_chain

__all__ = ["ChainResult", "ChainRunner", "ChainSpec", "load_chain", "plan_chain", "run_chain"]
