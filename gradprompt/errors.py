"""The one exception type users see.

Every failure caused by input (a model that cannot be found, a malformed dataset, a prompt that
does not fit the context) is raised as :class:`GradpromptError` with a message that names the
problem and the fix, so the CLI can print one line instead of a traceback from deep inside torch.
"""


class GradpromptError(Exception):
    """A problem with the user's input or set-up, with a message that says how to fix it."""
