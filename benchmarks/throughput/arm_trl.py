"""TRL's ``SFTTrainer`` + PEFT, set up as TRL's docs recommend for speed.

* ``trl`` — padding-free (``padding_free=True``: the batch's examples flattened into one
  row with ``position_ids`` restarting per example and no attention mask; transformers then
  builds a per-example block-causal mask from the positions for SDPA, or passes sequence
  boundaries to FlashAttention-2), loss on the completion only (a pre-tokenized dataset of
  ``input_ids`` + ``completion_mask``, ``completion_only_loss=True``), TRL's chunked LM head
  (it never materialises the full logits), Liger's kernels (``use_liger_kernel``) when
  liger-kernel imports and CUDA is there, FlashAttention-2 when ``flash_attn`` imports (else
  SDPA).  Batches: ours, in our order — a sequential sampler over the dataset laid out in
  the benchmark's batch order, ``shuffle_dataset=False``, no BFD packing (BFD regroups the
  examples into new batches, so its losses would not compare step by step).
* ``trl-packed`` — the same with ``packing=True`` (BFD): TRL's own fastest set-up, one
  packed row per step, ``max_length`` = the most tokens one of our batches holds.  Its rows
  hold other examples than ours, so its per-step losses do not compare step by step and
  it takes fewer steps; samples/s counts the examples each row packed.

The loss is TRL's: the sum of the supervised tokens' NLL over their count in the batch
(``num_items_in_batch``), the same definition as every other arm.  What was effective is
recorded: attention implementation, Liger or why not, padding-free, chunked head.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any

from .arm_hf import common_args, ordered, step_log
from .measure import diffs


def attention_choice(device: str) -> tuple[str, str | None]:
    """(attention implementation, why not FlashAttention-2 or None)."""
    if device != "cuda":
        return "sdpa", "flash_attn needs CUDA"
    if importlib.util.find_spec("flash_attn") is None:
        return "sdpa", "flash_attn not installed"
    return "flash_attention_2", None


def liger_choice(device: str) -> tuple[bool, str | None]:
    """(use Liger, why not)."""
    if device != "cuda":
        return False, "liger-kernel needs CUDA/triton: trl arm ran without it"
    if importlib.util.find_spec("liger_kernel") is None:
        return False, "liger-kernel not installed: trl arm ran without it"
    return True, None


def stub_tokenizer(pad_id: int = 0) -> Any:
    """A two-token tokenizer for random-init models: TRL wants a processing class with a pad
    token, and reads nothing else from it when the dataset is already tokenized."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": pad_id, "<eos>": pad_id + 1}
    tok = Tokenizer(WordLevel(vocab, unk_token="<pad>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


class TorchLogProb:
    """The per-token outputs of TRL's chunked LM head in plain torch (full logits), for where
    its Triton kernel cannot load (no triton on a CPU-only torch): TRL 1.15 has no fallback."""

    @staticmethod
    def apply(hidden: Any, weight: Any, bias: Any, labels: Any, temperature: float, chunk: int,
              softcap: float | None, logit_scale: float, outputs: tuple) -> tuple:
        import torch

        z = torch.nn.functional.linear(hidden, weight, bias).float() * logit_scale
        if softcap is not None:
            z = softcap * torch.tanh(z / softcap)
        z = z / temperature
        logp = torch.log_softmax(z, dim=-1)
        picked = logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            entropy = -(logp.exp() * logp).sum(-1) if "entropy" in outputs else None
            sq = torch.logsumexp(2 * logp, dim=-1) if "log_sum_sq_probs" in outputs else None
            mean = z.mean(-1) if "mean_logits" in outputs else None
            top1 = (z.argmax(-1) == labels) if "is_top1" in outputs else None
        return picked, entropy, sq, mean, top1


def chunked_head() -> str:
    """TRL's chunked LM head as it runs here (its Triton kernel, or :class:`TorchLogProb`)."""
    import trl.trainer.utils as tu

    if getattr(tu, "_ChunkedLogProbFunction", True) is None:
        tu._ChunkedLogProbFunction = TorchLogProb
        return "torch fallback (full logits): TRL's Triton kernel needs triton, absent here"
    return "TRL's Triton kernel"


def dataset(examples: list[Any], batches: list[list[int]]) -> Any:
    from datasets import Dataset

    rows = [examples[i] for b in batches for i in b]
    return Dataset.from_dict({"input_ids": [e.ids for e in rows],
                              "completion_mask": [[0] * e.n_prompt + [1] * e.n_answer for e in rows]})


def run(model: Any, examples: list[Any], batches: list[list[int]], args: Any, tokenizer: Any = None,
        packed: bool = False, trainer_cls: Any = None, liger: bool | None = None) -> dict:
    """Train ``model`` (a PeftModel, already checkpointed) on our batches; step times, losses, what was on."""
    import torch
    from trl import SFTConfig, SFTTrainer

    use_liger, no_liger = liger_choice(args.device)
    if liger is not None:  # the unsloth arm brings its own kernels
        use_liger, no_liger = liger, None if liger else "not used with unsloth (its own kernels)"
    attn = model.config._attn_implementation
    common = common_args(args, len(batches), "trl-packed" if packed else "trl")
    if packed:  # one BFD row per step, as many tokens as our fullest batch
        common["per_device_train_batch_size"] = 1
    cfg = SFTConfig(
        remove_unused_columns=True, gradient_checkpointing=False,  # the model is already checkpointed
        padding_free=True, completion_only_loss=True, shuffle_dataset=False,
        packing=packed, max_length=max(sum(len(examples[i].ids) for i in b) for b in batches) if packed else None,
        use_liger_kernel=use_liger, **common)
    head = chunked_head()
    losses: list[float] = []
    times: list[float] = []
    cls = trainer_cls or SFTTrainer
    trainer = ordered(cls)(model=model, args=cfg, train_dataset=dataset(examples, batches),
                           processing_class=tokenizer or stub_tokenizer(),
                           callbacks=[step_log(args.device, times, losses)])
    per_step = None
    if packed:
        rows = trainer.train_dataset
        per_step = {"step_samples": [len(r) for r in rows["seq_lengths"]],
                    "step_tokens": [sum(r) for r in rows["seq_lengths"]],
                    "step_supervised": [sum(x != -100 for x in r) for r in rows["labels"]]}
        trainer.args.max_steps = len(rows)
    start = time.perf_counter()
    trainer.train()
    effective = {"attn_implementation": attn, "padding_free": bool(trainer.padding_free),
                 "completion_only_loss": bool(trainer.completion_only_loss), "liger": use_liger,
                 "packing": "bfd" if packed else False, "chunked_lm_head": head,
                 "loss_normalisation": "sum over supervised tokens / their count in the batch (num_items_in_batch)"}
    if no_liger:
        effective["liger_not_used"] = no_liger
    if attn != "flash_attention_2":
        effective["flash_attention_not_used"] = attention_choice(args.device)[1] or "not requested"
    out = {"step_times": diffs([start, *times]), "losses": losses, "trl": effective}
    if per_step:  # BFD rows: what a step held is TRL's choice, not our batch
        out.update(per_step)
    if args.device == "cuda":
        torch.cuda.synchronize()
    return out
