"""The greedy token from final hidden states without a full-precision pass over the vocabulary.

Greedy decoding needs one thing from the output layer: the index of the largest logit. On a CPU a
float32 output layer is a large share of every decode step (SmolLM2's 49k x 576 matrix is a fifth
of the model's weights, and its matmul runs several times slower than the same one in bfloat16 on
hardware with bfloat16 instructions). :class:`GreedyHead` runs the layer in bfloat16 first and
then in float32 only for the tokens that could still be the largest, so the token it returns is
the float32 argmax, not an approximation of it. (Where two logits lie within float32's own
summation rounding of each other, either may come back, as the plain matmul itself gives either
at another batch size.)

Why that is exact: with ``u = 2**-8`` (bfloat16's unit roundoff), rounding the hidden state and
the weights to bfloat16 moves each product by at most ``(2u + u**2) |x_i||w_i|``; accumulating
576 or 4096 terms in float32 adds at most ``d * 2**-24`` of the same sum (counted twice, once for
the float32 reference), and rounding the result to bfloat16 at most ``u`` of its magnitude. By
Cauchy-Schwarz ``sum |x_i||w_i| <= ||x|| ||w||``, so every logit lies within a known margin of
its bfloat16 value. A token whose upper bound is below the best lower bound cannot be the argmax;
the few that remain (typically 1-20 of the whole vocabulary) get their float32 logits, and the
largest of those, ties to the lowest index as ``argmax`` breaks them, is the answer.

Monotone transforms of the logits (a positive scale, a division, tanh soft-capping) leave the
argmax where it is, so they are not applied. Models whose output layer is not float32 already
run at the low precision, and models on a device without fast bfloat16 gain nothing: for those
:func:`greedy_head` gives ``None`` and the caller takes the plain argmax of the logits.
"""

from __future__ import annotations

import weakref

import torch

UNIT = 2.0**-8  # bfloat16's unit roundoff
WIDEST_SHARE = 1 / 16  # more candidates than this share of the vocabulary: take the full pass


class GreedyHead:
    """A bfloat16 copy of the output layer, its rows' norms, and the float32 layer to check with."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight = weight.detach()
        self.bias = None if bias is None else bias.detach()
        self.low = self.weight.to(torch.bfloat16)
        self.norms = self.weight.norm(dim=-1)
        self.widest = float(self.norms.max())
        accumulate = self.weight.shape[1] * 2.0**-24
        self.slack = (2 * UNIT + UNIT**2 + 2 * accumulate) * 1.01  # products and sums, per unit of ||x|| ||w||
        self.rounding = UNIT * 1.01  # the bfloat16 result, per unit of its magnitude (at most (1 + slack) ||x|| ||w||)

    @torch.no_grad()
    def argmax(self, hidden: torch.Tensor) -> torch.Tensor:
        """(n,) the index of each row's largest float32 logit, from ``hidden`` (n, d)."""
        hidden = hidden.to(self.weight.dtype)
        if not len(hidden):
            return torch.zeros(0, dtype=torch.long, device=hidden.device)
        rough = (hidden.to(torch.bfloat16) @ self.low.T).float()
        if self.bias is not None:
            rough = rough + self.bias
        # First a margin per row from the widest weight row: one comparison over the vocabulary.
        # The few thousand tokens at most it keeps get their own margins, and the survivors their
        # float32 logits.
        norm = hidden.norm(dim=-1)
        widest = (self.slack * self.widest + self.rounding * self.widest * (1 + self.slack)) * norm
        possible = rough >= rough.max(dim=-1, keepdim=True).values - 2 * widest[:, None]
        rows, cols = possible.nonzero(as_tuple=True)
        if len(cols) > WIDEST_SHARE * possible.numel():
            return self.full_argmax(hidden)
        near = rough[rows, cols]
        margin = self.slack * norm[rows] * self.norms[cols] + self.rounding * near.abs()
        n = len(hidden)
        floor = near.new_full((n,), float("-inf")).scatter_reduce(0, rows, near - margin, "amax")
        kept = near + margin >= floor[rows]
        rows, cols = rows[kept], cols[kept]
        exact = (hidden[rows] * self.weight[cols]).sum(-1)
        if self.bias is not None:
            exact = exact + self.bias[cols]
        best = exact.new_full((n,), float("-inf")).scatter_reduce(0, rows, exact, "amax")
        top = exact == best[rows]
        none = self.weight.shape[0]
        chosen = torch.full((n,), none, dtype=torch.long, device=hidden.device)
        chosen = chosen.scatter_reduce(0, rows[top], cols[top], "amin")
        if bool((chosen == none).any()):  # a NaN in the hidden state: let the full pass decide
            return self.full_argmax(hidden)
        return chosen

    def full_argmax(self, hidden: torch.Tensor) -> torch.Tensor:
        """The plain float32 argmax, for rows the bound cannot narrow."""
        logits = hidden @ self.weight.T
        if self.bias is not None:
            logits = logits + self.bias
        return logits.argmax(-1)


def _fast_bfloat16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def _monotone_head(model) -> bool:
    """Whether the model's logits are an increasing function of the output layer's: then the
    layer's argmax is the model's."""
    scale = getattr(model.config, "logit_scale", None)
    divide = getattr(model.config, "logits_scaling", None)
    return (scale is None or scale > 0) and (divide is None or divide > 0)


_HEADS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def greedy_head(model) -> GreedyHead | None:
    """The model's :class:`GreedyHead` in this process, or ``None`` where it would not help."""
    if model in _HEADS:
        return _HEADS[model]
    layer = model.get_output_embeddings()
    weight = getattr(layer, "weight", None)
    usable = (
        isinstance(layer, torch.nn.Linear)
        and weight is not None
        and weight.dtype == torch.float32
        and _monotone_head(model)
        and _fast_bfloat16(weight.device)
    )
    _HEADS[model] = GreedyHead(weight, layer.bias) if usable else None
    return _HEADS[model]
