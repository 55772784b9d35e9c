"""`baton conformance`: drive any participant, in any language, over the real broker and
check it against docs/protocol.md (issue 10).

``samples`` reads a saga package's ``conformance.yaml``; ``schemas`` its contracts;
``driver`` publishes signed commands and hears replies and dead letters on private queues;
``kit`` builds commands like the orchestrator; ``checks`` and ``hostile`` are the checks,
one function each; ``runner`` runs them (and ``process`` the ``--run`` participant);
``report`` prints the result.
"""

from baton.conformance.report import CheckResult, Report
from baton.conformance.runner import CHECKS, Options, run_conformance
from baton.conformance.samples import ConformanceUsageError

__all__ = ["CHECKS", "CheckResult", "ConformanceUsageError", "Options", "Report", "run_conformance"]
