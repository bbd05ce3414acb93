"""Subscription filters: parse and validate them, compile them, and index them per topic.

Pure logic (no IO). ``parse_filter`` turns the JSON of ``properties.filter`` into an
``EventFilter``; ``compile_filter`` turns that into a predicate with SPEC §5's semantics;
``SubscriptionIndex`` finds the subscriptions of a topic an event matches without evaluating
all of them; ``parse_cli_advanced_filter`` reads Azure CLI's ``--advanced-filter`` syntax.
"""

from mlgrid.domain.event_filter import OPERATORS, AdvancedFilter, EventFilter, Number, canonical_schema
from mlgrid.filters.cli_syntax import parse_cli_advanced_filter
from mlgrid.filters.compile import (
    CompiledFilter,
    EventPredicate,
    FilterCompiler,
    compile_filter,
    compile_parts,
)
from mlgrid.filters.index import SubscriptionIndex
from mlgrid.filters.parse import (
    MAX_ADVANCED_FILTERS,
    MAX_STRING_VALUE_LENGTH,
    MAX_TOTAL_VALUES,
    advanced_filter_to_json,
    filter_to_json,
    is_addressable_key,
    parse_filter,
)

__all__ = [
    "MAX_ADVANCED_FILTERS",
    "MAX_STRING_VALUE_LENGTH",
    "MAX_TOTAL_VALUES",
    "OPERATORS",
    "AdvancedFilter",
    "CompiledFilter",
    "EventFilter",
    "EventPredicate",
    "FilterCompiler",
    "Number",
    "SubscriptionIndex",
    "advanced_filter_to_json",
    "canonical_schema",
    "compile_filter",
    "compile_parts",
    "filter_to_json",
    "is_addressable_key",
    "parse_cli_advanced_filter",
    "parse_filter",
]
