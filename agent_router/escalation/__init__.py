"""Escalation: checks of a cheap model's answer and a learned scorer deciding whether to ask one tier up.

- `checks.run_checks(messages, answer, finish_reason, tool_calls)`: deterministic findings with reasons;
- `scorer.EscalationScorer`: predicted quality gain of the next tier given the request and the cheap answer;
- `escalate.decide(router, decision, messages, answer, ...)`: keep the answer or re-ask one tier up (the loop,
  the host-loop hooks, `ask` and the gateway all call it);
- `evaluation`: out-of-fold cost-quality curves of request-only, escalation and hybrid routing on answer rows.
"""

from .checks import CHECKS, Finding, run_checks
from .escalate import Escalation, decide, route_up
from .scorer import EscalationScorer, load_scorer

__all__ = ["CHECKS", "Escalation", "EscalationScorer", "Finding", "decide", "load_scorer", "route_up", "run_checks"]
