"""The chat model that writes whole-prompt candidates (GPO's generation-based update).

Any LangChain ``BaseChatModel`` can be passed in through the graph's context; by default it is the
run's own local model behind ``ChatHuggingFace``, so no API model is needed.
"""

from __future__ import annotations

from functools import lru_cache

from gradprompt.nodes.runtime.model_runtime import ModelRuntime


@lru_cache(maxsize=4)
def _local_chat(rt: ModelRuntime, max_new_tokens: int):
    from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline
    from transformers import pipeline

    generator = pipeline(
        "text-generation",
        model=rt.model,
        tokenizer=rt.tokenizer,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        return_full_text=False,
        device=rt.device,
    )
    llm = HuggingFacePipeline(pipeline=generator, model_id=rt.loaded.spec)
    return ChatHuggingFace(llm=llm, tokenizer=rt.tokenizer, model_id=rt.loaded.spec)


def local_chat_model(rt: ModelRuntime, max_new_tokens: int = 160):
    """``ChatHuggingFace`` over the already-loaded model: no second copy of the weights."""
    return _local_chat(rt, max_new_tokens)
