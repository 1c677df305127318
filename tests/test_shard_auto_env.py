"""``--shard auto`` with a hostile scheduler environment."""

from __future__ import annotations

import pytest

from ai_content_pipeline.errors import UsageError
from ai_content_pipeline.shards import MAX_SHARDS, ShardRun, detect, fanout_takes


def test_a_huge_slurm_array_count_is_refused_before_a_run_allocates_it() -> None:
    # was: Shard(0, 10**12); ShardRun then built [0] * 10**12 (MemoryError traceback, exit 1)
    env = {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": str(10**12)}
    with pytest.raises(UsageError, match="SLURM_ARRAY_TASK_COUNT"):
        detect(env)
    env["SLURM_ARRAY_TASK_COUNT"] = str(MAX_SHARDS)
    ShardRun(detect(env), fanout_takes(1))
