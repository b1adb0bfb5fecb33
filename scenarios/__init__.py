"""Built-in scenarios, one per module; ``harness.scenario.registry()`` finds them all."""
