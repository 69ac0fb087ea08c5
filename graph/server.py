"""The graph as LangGraph's server and Studio serve it (see ``langgraph.json``).

Compiled without a checkpointer: the server brings its own and keys threads itself. Runs take
JSON input, ``{"settings": {"task": "builtin:compare", "steps": 4, ...}}`` (``run_id`` optional),
and the model is loaded once per server process, on the first run that needs it.
"""

from gradprompt.graph.builder import build_graph

graph = build_graph()
