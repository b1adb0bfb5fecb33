"""Strategies: the 14 units of work a scan runs, with seeded durations and opportunities.

A strategy's plan (how long it runs and which opportunities it finds) depends only on the
seed, the strategy id and the symbols, so the same seed replays the same scan. For
example ``plan_strategy(0, "momentum", ("BTC-USD",), mean_duration_s=0.07)`` always
returns the same duration and opportunities.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Final, Literal, get_args

StrategyId = Literal[
    "momentum",
    "mean_reversion",
    "breakout",
    "pairs_trading",
    "statistical_arbitrage",
    "market_making",
    "scalping",
    "futures",
    "options",
    "funding_arbitrage",
    "risk_management",
    "portfolio_optimization",
    "hedging",
    "complex_strategies",
]

# The ids in their catalogue order, read from the Literal so the two cannot drift apart.
STRATEGY_IDS: Final[tuple[StrategyId, ...]] = get_args(StrategyId)

DEFAULT_SYMBOLS: Final[tuple[str, ...]] = ("BTC-USD", "ETH-USD")

# A strategy runs between half and one and a half times the mean duration.
_DURATION_SPREAD: Final = 0.5
_MAX_OPPORTUNITIES_PER_SYMBOL: Final = 3


@dataclass(frozen=True)
class Opportunity:
    """A trade a strategy found: buy or sell a symbol for an expected return (a fraction)."""

    symbol: str
    side: Literal["buy", "sell"]
    expected_return: float


@dataclass(frozen=True)
class StrategyPlan:
    """What one strategy of one scan does: run for ``duration_s``, then report opportunities."""

    strategy_id: str
    duration_s: float
    opportunities: tuple[Opportunity, ...]

    def result_entry(self) -> dict[str, object]:
        """Return the results entry of this strategy, as the results endpoint sends it."""
        return {
            "strategy_id": self.strategy_id,
            "opportunities": [asdict(opportunity) for opportunity in self.opportunities],
        }


def plan_strategy(
    seed: int, strategy_id: str, symbols: Sequence[str], mean_duration_s: float
) -> StrategyPlan:
    """Return the seeded plan of ``strategy_id`` for ``symbols``."""
    # Seeding with a string is deterministic across processes, unlike hash().
    rng = random.Random(f"{seed}:{strategy_id}:{','.join(symbols)}")
    duration_s = mean_duration_s * rng.uniform(1 - _DURATION_SPREAD, 1 + _DURATION_SPREAD)

    opportunities: list[Opportunity] = []
    for symbol in symbols:
        for _ in range(rng.randint(0, _MAX_OPPORTUNITIES_PER_SYMBOL)):
            side: Literal["buy", "sell"] = "buy" if rng.random() < 0.5 else "sell"
            expected_return = round(rng.uniform(0.001, 0.05), 4)
            opportunities.append(Opportunity(symbol, side, expected_return))

    return StrategyPlan(strategy_id, duration_s, tuple(opportunities))


async def run_strategy(plan: StrategyPlan) -> StrategyPlan:
    """Run a strategy: wait for its duration, then return its plan as the finished work."""
    await asyncio.sleep(plan.duration_s)
    return plan
