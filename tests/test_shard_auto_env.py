"""``--shard auto`` with a hostile scheduler environment."""

from __future__ import annotations

import pytest

from ai_content_pipeline.errors import UsageError
from ai_content_pipeline.shards import MAX_SHARDS, ShardRun, detect, fanout_takes


def test_a_huge_slurm_array_count_is_refused_before_a_run_allocates_it() -> None:
    # a usage error, not Shard(0, 10**12) that ShardRun would turn into [0] * 10**12 (MemoryError)
    env = {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": str(10**12)}
    with pytest.raises(UsageError, match="SLURM_ARRAY_TASK_COUNT"):
        detect(env)
    env["SLURM_ARRAY_TASK_COUNT"] = str(MAX_SHARDS)
    ShardRun(detect(env), fanout_takes(1))
