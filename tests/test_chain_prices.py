"""A chain's ``prices`` are finite numbers from 0 to MAX_PRICE (else exit 2 naming the key and
line), a step's cost is finite or refused (never ``inf`` written as ``null``), and ``/metrics``
reads a finite cost even when a stored job holds ``inf``."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from ai_content_pipeline.chain.runner import MAX_STEP_COST, step_cost
from ai_content_pipeline.chain.spec import MAX_PRICE, Prices, load_chain
from ai_content_pipeline.errors import AicpError, ConfigError
from tests.chain_doubles import chain_data
from tests.test_fault_exits import aicp

FORGED = ["1e308", "1.0e+400", ".inf", "-.inf", ".nan", str(MAX_PRICE * 2), "-1"]


def _chain(tmp_path: Path, key: str, value: str) -> Path:
    text = yaml.safe_dump(chain_data(tmp_path), sort_keys=False)
    path = tmp_path / "chain.yaml"
    path.write_text(f"prices: {{{key}: {value}}}\n" + text)
    return path


@pytest.mark.parametrize("key", ["per_1k_tokens", "per_audio_minute", "per_gpu_second"])
@pytest.mark.parametrize("value", FORGED)
def test_a_price_out_of_range_is_a_validation_error_naming_it(tmp_path: Path, key: str, value: str) -> None:
    path = _chain(tmp_path, key, value)
    with pytest.raises(ConfigError, match=f"chain.yaml:1: prices.{key}: "):
        load_chain(str(path))
    code, out, err = aicp(["run-chain", "--config", str(path), "--dry-run"])
    assert code == 2 and f"prices.{key}" in err and "Traceback" not in err


def test_prices_up_to_the_bound_are_read(tmp_path: Path) -> None:
    spec = load_chain(str(_chain(tmp_path, "per_1k_tokens", str(MAX_PRICE))))
    assert spec.prices.per_1k_tokens == MAX_PRICE


def test_a_step_cost_at_the_highest_prices_stays_finite() -> None:
    top = Prices(per_1k_tokens=MAX_PRICE, per_audio_minute=MAX_PRICE, per_gpu_second=MAX_PRICE)
    cost = step_cost(top, 10**6, 3600.0, 3600.0, "cuda")
    assert math.isfinite(cost) and cost == pytest.approx(1e9 + 6e7 + 3.6e9)


@pytest.mark.parametrize(("tokens", "audio", "seconds"), [(10**400, 0.0, 0.0), (10**30, 0.0, 0.0),
                                                          (0, 1e300, 0.0), (0, 0.0, float("inf"))])
def test_a_cost_that_would_overflow_is_refused_not_null(tokens: int, audio: float, seconds: float) -> None:
    top = Prices(per_1k_tokens=MAX_PRICE, per_audio_minute=MAX_PRICE, per_gpu_second=MAX_PRICE)
    with pytest.raises(AicpError, match=re.escape(f"past {MAX_STEP_COST:g}")):
        step_cost(top, tokens, audio, seconds, "cuda")
