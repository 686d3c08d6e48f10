"""The loss of a micro-batch, chosen by ``TrainConfig.objective``: the seam for new objectives.

An objective is a function ``objective(model, batch, device, cfg) -> (loss, n_tokens)``:

* ``model``  — the model to train (inside DDP, or as the CUDA-graph step holds it); call it
  through :func:`breachlab.vuln.training.sft.forward_loss`-style helpers or directly.
* ``batch``  — the dict :func:`~breachlab.vuln.training.sft.collate_packed` (``packing: true``)
  or :func:`~breachlab.vuln.training.sft.collate` builds from the micro-batch's
  :class:`~breachlab.vuln.training.sft.Encoded` examples (``input_ids``, ``targets``, ``keep``,
  ``first``, ``n_supervised``, ...), tensors still on the CPU (or the graph's static tensors).
* ``device`` — where the model is.
* ``cfg``    — the run's :class:`~breachlab.vuln.training.config.TrainConfig`.

It returns the micro-batch's loss as a 0-d tensor *summed* over its ``n_tokens`` supervised
tokens (not averaged): the trainer divides the step's sums by the step's token count over
every micro-batch and process, so the step's loss is a token mean however the tokens fall
into micro-batches.  The CUDA-graph step captures the objective as it is, so it must run
the same kernels every call (no data-dependent Python branches on tensor values).

Add one in one place: a function here and an entry in :data:`OBJECTIVES`.
"""

from __future__ import annotations

from typing import Any, Callable

from breachlab.config import ConfigError
from breachlab.vuln.training import pairloss, sft
from breachlab.vuln.training.config import TrainConfig

Objective = Callable[[Any, dict, Any, TrainConfig], tuple[Any, Any]]


def sft_loss(model: Any, batch: dict, device: Any, cfg: TrainConfig) -> tuple[Any, Any]:
    """Supervised fine-tuning: token NLL summed over the answer (verdict, CWE, reason);
    logits only where the loss reads them."""
    return sft.forward_loss(model, batch, device)


def pair_margin(model: Any, batch: dict, device: Any, cfg: TrainConfig) -> tuple[Any, Any]:
    """SFT plus a pair term: for each vulnerable/fixed pair whose two halves are in this
    micro-batch, ``softplus(pair_margin - (s_vulnerable - s_fixed))`` with ``s`` the verdict
    logit gap (VULNERABLE's first token minus SAFE's) at the verdict position.

    Plain SFT learns each half on its own and, on vulnerable-vs-patched pairs, tends to call
    both the same (PrimeVul's P-V/P-B); the pair term asks for the ordering itself.  It is
    scaled by the micro-batch's answer-token count, so after the trainer's division by the
    step's token count it weighs ``pair_weight`` × (this micro-batch's share of the tokens);
    the logged training loss then includes it.  The batches keep pairs together
    (:func:`~breachlab.vuln.training.pairloss.pair_batches`).
    """
    import torch.nn.functional as F

    logits, targets, first = sft._answer_logits(model, batch, device)
    loss_sum = F.cross_entropy(logits, targets, ignore_index=sft.IGNORE, reduction="sum")
    labels = batch["labels"].to(logits.device)
    index = pairloss.pair_index(batch["pairs"]).to(logits.device)
    if not bool((index >= 0).any()) or cfg.pair_weight == 0:
        return loss_sum, batch["n_supervised"]
    verdict_targets = targets[first]
    pos = verdict_targets[labels == 1]
    neg = verdict_targets[labels == 0]
    if not len(pos) or not len(neg) or int(pos[0]) == int(neg[0]):
        return loss_sum, batch["n_supervised"]
    scores = pairloss.verdict_margin(logits[first], int(pos[0]), int(neg[0]))
    term = pairloss.pair_margin_loss(scores, labels, index, margin=cfg.pair_margin)
    return loss_sum + cfg.pair_weight * term * batch["n_supervised"], batch["n_supervised"]


OBJECTIVES: dict[str, Objective] = {"sft": sft_loss, "pair_margin": pair_margin}


def get(name: str) -> Objective:
    """The objective called ``name``; a :class:`ConfigError` naming the choices otherwise."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ConfigError(f"objective must be one of {', '.join(sorted(OBJECTIVES))}; got {name!r}") from None


def bind(cfg: TrainConfig) -> Callable[[Any, dict, Any], tuple[Any, Any]]:
    """``cfg``'s objective as ``(model, batch, device) -> (loss, n_tokens)``, the form the
    eager step and the CUDA-graph step call."""
    objective = get(cfg.objective)

    def loss(model: Any, batch: dict, device: Any) -> tuple[Any, Any]:
        return objective(model, batch, device, cfg)

    return loss
