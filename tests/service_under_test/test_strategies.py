"""Seeded strategy plans."""

from __future__ import annotations

from service_under_test.strategies import STRATEGY_IDS, plan_strategy


def test_fourteen_distinct_strategies() -> None:
    assert len(STRATEGY_IDS) == 14
    assert len(set(STRATEGY_IDS)) == 14


def test_plan_is_deterministic() -> None:
    first = plan_strategy(7, "momentum", ["BTC-USD", "ETH-USD"], 0.07)
    second = plan_strategy(7, "momentum", ["BTC-USD", "ETH-USD"], 0.07)

    assert first == second


def test_plan_depends_on_seed_and_symbols() -> None:
    plans = {
        plan_strategy(seed, strategy_id, symbols, 0.07)
        for seed in (0, 1)
        for strategy_id in STRATEGY_IDS
        for symbols in (("BTC-USD",), ("BTC-USD", "ETH-USD"))
    }

    assert len(plans) == 2 * 14 * 2


def test_plan_bounds() -> None:
    symbols = ["BTC-USD", "ETH-USD", "SOL-USD"]
    for seed in range(20):
        for strategy_id in STRATEGY_IDS:
            plan = plan_strategy(seed, strategy_id, symbols, 0.1)

            assert 0.05 <= plan.duration_s <= 0.15
            for symbol in symbols:
                found = [o for o in plan.opportunities if o.symbol == symbol]
                assert 0 <= len(found) <= 3
            for opportunity in plan.opportunities:
                assert opportunity.side in ("buy", "sell")
                assert opportunity.expected_return == round(opportunity.expected_return, 4)


def test_result_entry_shape() -> None:
    plan = plan_strategy(3, "hedging", ["BTC-USD"], 0.07)

    entry = plan.result_entry()

    assert entry["strategy_id"] == "hedging"
    assert entry["opportunities"] == [
        {"symbol": o.symbol, "side": o.side, "expected_return": o.expected_return}
        for o in plan.opportunities
    ]
