"""What a run gets from its caller rather than its state: things that are not JSON.

LangGraph hands this to every node as the runtime context (``context_schema``); it is not
checkpointed. The driver that starts or resumes a run (``optimize``, ``resume``) builds the run's
:class:`~gradprompt.nodes.session.Session` once and passes it here. A caller that passes none (the
LangGraph server, whose runs arrive as JSON) has each node look the session up from the run's
settings, in caches that load the model and the task once per process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Context:
    chat_model: Any = None  # a LangChain BaseChatModel for refinement; None: the run's own local model
    # the run's nodes.session.Session (model, task, splits, rollout cache), built by the driver; what
    # a JSON caller sends here is ignored
    session: Any = None
    # seconds the driver spent building the session (the model load): the first node to run counts
    # them in the run's spent time, as it would have had it loaded the model itself
    load_seconds: list[float] = field(default_factory=list)
