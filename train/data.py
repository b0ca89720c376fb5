"""Conversations → ``input_ids`` + ``labels`` with the loss on the assistant (action) turns only.

The chat template is rendered once for the whole conversation and once per assistant turn for the
prefix before and after it; the characters in between (the action and the template's end-of-turn
marker) are the trained span. Tokens are assigned to spans by their character offsets, so this
works for any chat template that renders prefixes consistently — no ``{% generation %}`` markers
needed (Codestral's and CodeGemma's templates have none). Templates that reject a system turn
(Gemma) get the system prompt folded into the first user turn.

Rows longer than ``max_length`` are dropped, never cut: a cut row would train on a prompt without
its action or an action without its observation. The caller gets the count and a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from lbi.errors import LbiError
from lbi.synth.sft import Messages

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""Label of a token that is not trained (PyTorch's cross-entropy ``ignore_index``)."""


@dataclass
class TokenizeReport:
    """What tokenization kept and dropped; it goes into the model card."""

    rows: int = 0
    kept: int = 0
    dropped_too_long: int = 0
    max_length: int | None = None
    longest: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    system_folded: bool = False
    dropped_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fold_system(messages: Messages) -> Messages:
    """The system prompt prepended to the first user turn (for templates without a system role)."""
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
    if rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
        return rest
    return [{"role": "user", "content": system}, *rest]


def _render(tokenizer: Any, messages: Messages, generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=generation_prompt)


def accepts_system_turn(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a system message (Gemma's raises)."""
    try:
        text = _render(tokenizer, [{"role": "system", "content": "S-probe"},
                                   {"role": "user", "content": "U"}])
    except Exception:  # jinja2 raise_exception → TemplateError; some templates raise others
        return False
    return "S-probe" in text


def assistant_spans(tokenizer: Any, messages: Messages) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn."""
    text = _render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True)
        after = _render(tokenizer, messages[: i + 1])
        if not (after.startswith(before) and text.startswith(after)):
            raise LbiError("the chat template does not render conversation prefixes consistently "
                           "(e.g. it rewrites earlier turns), so the action tokens cannot be "
                           "located; pass a template that does via --chat_template_path")
        # The turn's end-of-turn marker is trained; the whitespace the template adds after it is
        # not (the model stops at the marker).
        spans.append((len(before), len(after.rstrip())))
    return text, spans


def tokenize_conversation(tokenizer: Any, messages: Messages) -> dict[str, list[int]]:
    """``input_ids`` and ``labels`` (``IGNORE_INDEX`` outside assistant turns) of one chat."""
    if not getattr(tokenizer, "is_fast", False):
        raise LbiError(f"{type(tokenizer).__name__} is not a fast tokenizer: character offsets "
                       "are needed to find the action tokens")
    text, spans = assistant_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, labels = encoded["input_ids"], []
    for token_id, (start, _end) in zip(ids, encoded["offset_mapping"], strict=True):
        trained = any(a <= start < b for a, b in spans)
        labels.append(token_id if trained else IGNORE_INDEX)
    return {"input_ids": ids, "labels": labels}


def tokenize_rows(tokenizer: Any, rows: Iterable[tuple[str, Messages]],
                  max_length: int | None) -> tuple[list[dict[str, Any]], TokenizeReport]:
    """Tokenize ``(id, messages)`` rows; rows over ``max_length`` tokens are dropped and counted."""
    report = TokenizeReport(max_length=max_length)
    report.system_folded = not accepts_system_turn(tokenizer)
    out = []
    for row_id, messages in rows:
        report.rows += 1
        try:
            tokens = tokenize_conversation(
                tokenizer, fold_system(messages) if report.system_folded else messages)
        except LbiError:
            raise
        except Exception as exc:  # a malformed row: name it instead of a template traceback
            raise LbiError(f"row {row_id!r} cannot be rendered by the chat template: "
                           f"{type(exc).__name__}: {exc}") from None
        n = len(tokens["input_ids"])
        report.longest = max(report.longest, n)
        if max_length is not None and n > max_length:
            report.dropped_too_long += 1
            report.dropped_ids.append(row_id)
            continue
        if all(label == IGNORE_INDEX for label in tokens["labels"]):
            raise LbiError(f"row {row_id!r} has no assistant turn to train on")
        report.kept += 1
        report.tokens += n
        report.trained_tokens += sum(label != IGNORE_INDEX for label in tokens["labels"])
        out.append({"id": row_id, **tokens})
    if report.dropped_too_long:
        log.warning("dropped %d of %d rows longer than max_length=%s tokens (longest %d): raise "
                    "max_length to keep them", report.dropped_too_long, report.rows, max_length,
                    report.longest)
    if report.system_folded:
        log.info("the chat template has no system role: system prompts were folded into the "
                 "first user turn")
    return out, report
