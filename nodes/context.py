"""What a run gets from its caller rather than its state: things that are not JSON.

LangGraph hands this to every node as the runtime context (``context_schema``); it is not
checkpointed. The driver that starts or resumes a run (``optimize``, ``resume``) builds the run's
:class:`~gradprompt.nodes.session.Session` once and passes it here; a caller that passes none (the
LangGraph server, whose runs arrive as JSON) gets one loaded from the run's settings on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Context:
    chat_model: Any = None  # a LangChain BaseChatModel for refinement; None: the run's own local model
    # the run's nodes.session.Session (model, task, splits, rollout cache); typed Any so the context's
    # JSON schema, which the LangGraph server publishes, stays the caller's chat model alone
    session: Any = None
