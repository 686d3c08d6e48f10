from __future__ import annotations

import pytest

from breachlab.vuln.cwe import cwe_name
from breachlab.vuln.prompts import (
    INFERENCE_QUESTION,
    TRAIN_INSTRUCTION,
    detect_echo,
    inference_prompt,
    parse_verdict,
    shared_ngrams,
    training_example,
    training_target,
)

CODE = "int f(char *s) {\n  char b[8];\n  strcpy(b, s);\n  return 0;\n}"


def test_inference_prompt_is_not_part_of_training_template() -> None:
    prompt, completion = training_example(CODE, 1, "CWE-121")
    infer = inference_prompt(CODE)
    q = INFERENCE_QUESTION.format(lang="C")
    assert q not in prompt + completion
    assert TRAIN_INSTRUCTION.format(lang="C") not in infer
    assert not shared_ngrams(INFERENCE_QUESTION, TRAIN_INSTRUCTION)
    assert not shared_ngrams(INFERENCE_QUESTION, completion)


def test_gemma_turn_format_without_chat_template() -> None:
    p = inference_prompt(CODE, "cpp")
    assert p.startswith("<start_of_turn>user\n") and p.endswith("<end_of_turn>\n<start_of_turn>model\n")
    assert "```cpp\n" + CODE in p and "C++ function" in p


class _Tok:
    chat_template = "x"
    eos_token = "</s>"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return "|".join(f"{m['role']}:{m['content'][:5]}" for m in messages) \
            + ("|assistant:" if add_generation_prompt else "")


def test_uses_tokenizer_chat_template_when_present() -> None:
    assert inference_prompt(CODE, tokenizer=_Tok()).endswith("|assistant:")
    _, completion = training_example(CODE, 0, tokenizer=_Tok())
    assert completion.endswith("</s>")


def test_training_target_leads_with_verdict_and_cwe_name() -> None:
    assert training_target(1, "CWE-787", "writes past the end.") == \
        "VULNERABLE — CWE-787 (Out-of-bounds Write): writes past the end."
    assert training_target(0).startswith("SAFE: ")
    assert cwe_name("cwe-416") == "Use After Free" and cwe_name(None) is None and cwe_name("CWE-999999") is None


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("VULNERABLE — CWE-787: overflow", "VULNERABLE"),
        ("SAFE: bounds are checked", "SAFE"),
        ("This function is NOT VULNERABLE because it checks n.", "SAFE"),
        ("The code is not vulnerable.", "SAFE"),
        ("It isn't safe: strcpy overflows b.", "VULNERABLE"),
        ("There is no vulnerability here.", "SAFE"),
        ("SAFE. A careless reader might call it vulnerable.", "SAFE"),
        ("The function is unsafe", "VULNERABLE"),
        ("This is vulnerable to a buffer overflow", "VULNERABLE"),
        ("I cannot tell.", None),
        ("", None),
    ],
)
def test_parse_verdict_reads_the_first_verdict_with_negation(text: str, verdict: str | None) -> None:
    assert parse_verdict(text) == verdict


def test_echo_detector_flags_template_completion_not_real_answers() -> None:
    # the failure mode of the original run, and the base model's habit of repeating the prompt
    assert detect_echo("SAFE and a brief reason. Is this C function VULNERABLE or SAFE? Explain")
    assert detect_echo("You are a senior application-security engineer who audits C and C++ code.")
    assert not detect_echo("VULNERABLE — CWE-121: strcpy copies an unbounded string into an 8-byte stack buffer.")
    assert not detect_echo("SAFE")
