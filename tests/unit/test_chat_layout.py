"""Prompt, question and generation spans located by token offsets for several chat templates."""

from __future__ import annotations

import pytest
from tiny_model import CHATML, GEMMA, LLAMA3, MISTRAL, tiny_tokenizer

from gradprompt.errors import GradpromptError
from gradprompt.nodes.runtime.chat_layout import ChatLayout

TEMPLATES = {"chatml": CHATML, "llama3": LLAMA3, "mistral": MISTRAL, "gemma": GEMMA}
QUESTION = "Is 5 larger than 3? Answer Yes or No."
PROMPT = "Let's think step by step."


@pytest.mark.parametrize("template", sorted(TEMPLATES))
@pytest.mark.parametrize("placement", ["after", "before", "system"])
def test_spans_hold_the_prompt_and_question(template, placement):
    tok = tiny_tokenizer(TEMPLATES[template])
    layout = ChatLayout(tok, placement)
    prompt_ids = layout.text_ids(PROMPT)
    if template == "gemma" and placement == "system":  # the template has no system turn
        with pytest.raises(GradpromptError, match="choose another placement"):
            layout.encode(QUESTION, prompt_ids)
        return
    enc = layout.encode(QUESTION, prompt_ids)
    assert enc.ids[enc.prompt[0] : enc.prompt[1]] == prompt_ids
    assert tok.decode(enc.ids[enc.question[0] : enc.question[1]]).strip() == QUESTION
    rendered = tok.apply_chat_template(layout._messages(QUESTION), tokenize=False, add_generation_prompt=True).replace(
        "[[GRADPROMPT-PROMPT]]", PROMPT
    )
    assert tok.decode(enc.ids) == rendered
    # the spans do not overlap and the prompt sits where the placement says
    if placement == "after":
        assert enc.question[1] <= enc.prompt[0]
    else:
        assert enc.prompt[1] <= enc.question[0]


def test_prompt_ids_are_spliced_not_re_encoded():
    """Token ids that do not round-trip through text survive unchanged (no decode/encode)."""
    tok = tiny_tokenizer(CHATML)
    layout = ChatLayout(tok, "after")
    odd = tuple(layout.text_ids("step")) + tuple(layout.text_ids("by"))  # 'stepby' re-encodes differently
    enc = layout.encode(QUESTION, odd)
    assert enc.ids[enc.prompt[0] : enc.prompt[1]] == odd
    same = layout.encode(QUESTION, ())
    assert enc.ids[: enc.prompt[0]] == same.ids[: same.prompt[0]]
    assert enc.ids[enc.prompt[1] :] == same.ids[same.prompt[1] :]


def test_empty_prompt_gives_an_empty_span():
    tok = tiny_tokenizer(LLAMA3)
    enc = ChatLayout(tok, "after").encode(QUESTION, ())
    assert enc.prompt[0] == enc.prompt[1]
    assert tok.decode(enc.ids[enc.question[0] : enc.question[1]]).strip() == QUESTION
