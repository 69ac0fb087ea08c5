"""What a run gets from its caller rather than its state: things that are not JSON.

LangGraph passes this as the runtime context (``context_schema``); it is not checkpointed, so a
resumed run is handed it again (``resume(run_id, chat_model=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Context:
    chat_model: Any = None  # a LangChain BaseChatModel for refinement; None: the run's own local model
