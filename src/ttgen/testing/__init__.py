"""Test helpers that ship with ttgen: benchmarks and integration tests import them too."""

from ttgen.testing.scripted_llm import (
    Drop,
    Error,
    Malformed,
    RecordedRequest,
    Reply,
    ScriptedLLMServer,
    Slow,
    Step,
)

__all__ = [
    "Drop",
    "Error",
    "Malformed",
    "RecordedRequest",
    "Reply",
    "ScriptedLLMServer",
    "Slow",
    "Step",
]
