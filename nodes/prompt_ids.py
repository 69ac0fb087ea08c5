"""How every part of the search holds a prompt: as the model's token ids, a hashable tuple, so one
prompt is one key in the rollout cache, the race, the history and the held-prompt set."""

PromptIds = tuple[int, ...]
