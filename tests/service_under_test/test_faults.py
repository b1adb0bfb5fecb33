"""The fault registry: names, parsing and the active check."""

from __future__ import annotations

import pytest

from service_under_test import faults
from service_under_test.faults import KNOWN, ActiveFaults, UnknownFaultError, parse_fault_names

IMPLEMENTED = [
    "memory-only-lookup",
    "lookup-deleted-on-complete",
    "late-placeholder",
    "no-progress-on-complete",
    "zero-total-placeholder",
    "racy-progress-counter",
    "stale-worker-snapshot",
    "shared-result-slot",
    "no-owner-check",
    "worker-without-store",
    "read-once-results",
    "lookup-ttl-shorter",
    "results-ttl-shorter",
    "progress-drops-ttl",
    "orphaned-on-worker-death",
    "store-error-as-not-found",
]


def test_known_lists_catalogue_in_order() -> None:
    assert list(KNOWN) == IMPLEMENTED


def test_every_fault_states_mechanism_and_symptom() -> None:
    for name, fault in KNOWN.items():
        assert fault.name == name
        assert fault.mechanism
        assert fault.symptom


def test_parse_comma_separated_names() -> None:
    names = parse_fault_names(" no-owner-check,, read-once-results ,")

    assert names == {"no-owner-check", "read-once-results"}


def test_parse_empty_string() -> None:
    assert parse_fault_names("") == frozenset()


def test_unknown_name_lists_known_faults() -> None:
    with pytest.raises(UnknownFaultError) as raised:
        parse_fault_names("no-owner-check,no-such-fault")

    message = str(raised.value)
    assert "unknown fault 'no-such-fault'" in message
    for name in IMPLEMENTED:
        assert name in message


def test_active_checks_enabled_names() -> None:
    enabled = ActiveFaults(frozenset({faults.NO_OWNER_CHECK}))

    assert enabled.active(faults.NO_OWNER_CHECK)
    assert not enabled.active(faults.READ_ONCE_RESULTS)


def test_active_rejects_misspelt_name() -> None:
    with pytest.raises(UnknownFaultError, match="no-owner-chek"):
        ActiveFaults().active("no-owner-chek")
