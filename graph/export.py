"""A run's prompt for use elsewhere: the text alone, a JSON file with everything its reading needs,
or a LangChain ``ChatPromptTemplate`` that lays the prompt out the way the run measured it.

The template is built from the run's placement, so formatting it with a question and applying the
model's chat template gives the token ids the run fed the model (when the prompt's text tokenizes
back to the ids the run held; the JSON export says whether it does).
"""

from __future__ import annotations

import hashlib
from typing import Any

from langchain_core.prompts import ChatPromptTemplate

from gradprompt.errors import GradpromptError
from gradprompt.graph.predict import Predictor
from gradprompt.nodes.runtime.chat_layout import Placement

FORMATS = ("text", "json", "langchain")
EXPORT_VERSION = 1


def _literal(text: str) -> str:
    """Text as an f-string template that formats to itself."""
    return text.replace("{", "{{").replace("}", "}}")


def prompt_template(predictor: Predictor, separator: str = "\n") -> ChatPromptTemplate:
    """The run's chat around its prompt, with ``{question}`` where the question goes. Its metadata
    carries the rest of the reading (extractor, allowed answers, reasoning budget), which a chat
    template cannot hold."""
    prompt = _literal(predictor.prompt_text)
    placement = Placement(predictor.settings.placement)
    if placement is Placement.AFTER:
        messages = [("human", "{question}" + separator + prompt)]
    elif placement is Placement.BEFORE:
        messages = [("human", prompt + separator + "{question}")]
    else:
        messages = [("system", prompt), ("human", "{question}")]
    template = ChatPromptTemplate.from_messages(messages)
    template.metadata = {"gradprompt": _reading_rules(predictor)}
    return template


def _reading_rules(predictor: Predictor) -> dict[str, Any]:
    """How the answer is read after the chat: the part of the reading that lives outside it."""
    readout, s = predictor.readout, predictor.settings
    letters = readout.fmt.kind.value == "letter"
    return {
        "run_id": predictor.run_id,
        "model": s.model,
        "placement": s.placement,
        "max_new_tokens": s.max_new_tokens,
        "decoding": "greedy",
        "readout": readout.to_json(),
        "extractor": readout.extractor(""),
        "extractor_depends_on_question": readout.extractor("(A) x (B) y") != readout.extractor(""),
        "extractor_rule": "after the reasoning (or at once for direct answers), the extractor is appended and "
        + (
            "the answer is the allowed option with the highest summed log-probability"
            if readout.chooses
            else "the answer is generated greedily and parsed"
        ),
        "options": (
            "the letters the question offers, e.g. (A) (B) (C); A to Z when it lists none"
            if letters and readout.chooses
            else "generated and parsed as a letter"
            if letters
            else [{"answer": name, "text": text} for name, text in readout.options("")]
        ),
    }


def reading(predictor: Predictor, example_question: str | None = None) -> dict[str, Any]:
    """Everything needed to reproduce the run's reading of answers, with the run's scores."""
    rt, s = predictor.session.rt, predictor.settings
    retokenized = tuple(rt.encode_prompt(predictor.prompt_text)) == predictor.prompt_ids
    splits = predictor.session.splits
    question = example_question or (splits.test or splits.dev or splits.train)[0].question
    template = rt.tokenizer.chat_template or ""
    final = predictor.final
    return {
        "gradprompt_export": EXPORT_VERSION,
        "run_id": predictor.run_id,
        "task": s.task,
        "prompt": predictor.prompt_text,
        "which": predictor.which,
        "prompt_ids": list(predictor.prompt_ids),
        "text_tokenizes_to_ids": retokenized,
        **{k: v for k, v in _reading_rules(predictor).items() if k != "run_id"},
        "model_settings": {"model": s.model, "dtype": s.dtype, "device": s.device},
        "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest(),
        "chat_template": template,
        "example": {
            "question": question,
            "model_input": rt.tokenizer.decode(rt.layout.encode(question, predictor.prompt_ids).ids)
            + rt.decode(rt.extractor_ids(predictor.readout.extractor(question))),
        },
        "scores": {
            # the run's own scores: of this prompt only when it is the run's final or initial one
            "this_prompt_is": predictor.which if predictor.which in ("final", "initial") else None,
            "dev_examples": final.get("dev_examples"),
            "test_examples": final.get("test_examples"),
            "initial": {k: (final.get("baseline") or {}).get(k) for k in ("text", "dev", "test")},
            "final": {k: (final.get("best") or {}).get(k) for k in ("text", "dev", "test")},
            "final_gain_over_initial": (final.get("gain") or {}).get("test"),
            "empty_prompt": (final.get("empty_prompt") or {}).get("test"),
            "step_by_step": (final.get("step_by_step") or {}).get("test"),
        },
    }


def export(predictor: Predictor, fmt: str) -> str:
    """The export as the text of a file: the prompt, the JSON reading, or the serialised template."""
    import json

    if fmt == "text":
        return predictor.prompt_text + "\n"
    if fmt == "json":
        return json.dumps(reading(predictor), indent=2) + "\n"
    if fmt == "langchain":
        from langchain_core.load import dumps

        return dumps(prompt_template(predictor), pretty=True) + "\n"
    raise GradpromptError(f"unknown export format {fmt!r}: use {', '.join(FORMATS)}")


def load_template(text: str) -> ChatPromptTemplate:
    """An exported template read back with LangChain's own loader."""
    import warnings

    from langchain_core.load import loads

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = loads(text, allowed_objects="core")
    if not isinstance(out, ChatPromptTemplate):
        raise GradpromptError("the file does not hold a ChatPromptTemplate: export one with --format langchain")
    return out
