"""Escalation: checks of a cheap model's answer and a learned scorer deciding whether to ask one tier up.

- `checks.run_checks(messages, answer, finish_reason, tool_calls)`: deterministic findings with reasons;
- `scorer.EscalationScorer`: predicted quality gain of the next tier given the request and the cheap answer;
- `evaluation`: out-of-fold cost-quality curves of request-only, escalation and hybrid routing on answer rows.
"""

from .checks import CHECKS, Finding, run_checks
from .scorer import EscalationScorer, load_scorer

__all__ = ["CHECKS", "EscalationScorer", "Finding", "load_scorer", "run_checks"]
