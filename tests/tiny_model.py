"""A tiny random Llama and a small BPE tokenizer, built in-process in about a second.

Unit tests of the math run on this; the same code paths run on the real bundled model in the
integration tests.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from gradprompt.nodes.runtime.model_loading import LoadedModel

SPECIALS = [
    "<pad>",
    "<s>",
    "</s>",
    "<|im_start|>",
    "<|im_end|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "[INST]",
    "[/INST]",
    "<start_of_turn>",
    "<end_of_turn>",
]

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3 = (
    "<s>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
MISTRAL = (
    "<s>{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] + '\\n\\n' %}"
    "{% set msgs = messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}"
    "{% for m in msgs %}{% if m['role'] == 'user' %}[INST] {{ sys if loop.first else '' }}{{ m['content'] }} [/INST]"
    "{% else %}{{ m['content'] }}</s>{% endif %}{% endfor %}"
)
GEMMA = (
    "<s>{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

CORPUS = [
    "Let's think step by step. Answer carefully and check the result.",
    "What is 12 + 30? Is 5 larger than 3? Answer Yes or No. Which of these is a fruit?",
    "Options: (A) apple (B) car (C) red. Therefore, the final answer is (A).",
    "The quick brown fox jumps over the lazy dog. Solve the problem, explain your reasoning.",
    "True False valid invalid Uncertain premises conclusion number numbers 0 1 2 3 4 5 6 7 8 9",
]


def tiny_tokenizer(template: str = CHATML) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        additional_special_tokens=SPECIALS[3:],
    )
    fast.chat_template = template
    return fast


def _norms_in_own_dtype(model: torch.nn.Module) -> None:
    """Llama's RMSNorm computes in float32 whatever the model's dtype; a float64 model for
    finite-difference checks needs it in float64 too, or rounding swamps the difference."""

    def forward(norm, hidden):
        variance = hidden.pow(2).mean(-1, keepdim=True)
        return norm.weight * (hidden * torch.rsqrt(variance + norm.variance_epsilon))

    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm"):
            module.forward = forward.__get__(module)


def tiny_model(vocab_size: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=4,
        initializer_range=0.3,  # wide enough that greedy generations differ between inputs
    )
    model = LlamaForCausalLM(config).to(dtype)
    if dtype == torch.float64:
        _norms_in_own_dtype(model)
    model.eval()
    model.requires_grad_(False)
    return model


def tiny_loaded(template: str = CHATML, dtype: torch.dtype = torch.float32) -> LoadedModel:
    tok = tiny_tokenizer(template)
    model = tiny_model(len(tok), dtype)
    return LoadedModel("tiny", model, tok, torch.device("cpu"), dtype)
