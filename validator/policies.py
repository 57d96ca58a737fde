"""Policies for checks: what a failed check does to the gate, set per check in the config file."""

from __future__ import annotations

import enum


class Policy(str, enum.Enum):
    ERROR = "error"  # fails the gate (the default)
    WARN = "warn"  # reported, does not fail the gate
    OFF = "off"  # not run


# The checks a policy can be set for, in report order.
STATIC_POLICY_CHECKS = (
    "pyfunc-flavor",
    "integrity",
    "environment-files",
    "environment-agreement",
    "resolvable",
    "runtime-constraints",
    "pinned",
    "uv-lock",
    "code-imports",
    "secrets",
    "signature",
    "input-example",
    "example-matches-signature",
)
ANSWER_POLICY_CHECKS = (
    "rejects-invalid-input",
    "deterministic",
    "output-contract",
    "matches-venv",
)
POLICY_CHECKS = STATIC_POLICY_CHECKS + ANSWER_POLICY_CHECKS
