"""Feedback as JSONL in the prompt/completion/label format of TRL's KTO trainer."""

from __future__ import annotations

import json
from typing import IO

from learning.examples import kto_rows
from learning.feedback import FeedbackSet


def write_kto_jsonl(queryset: FeedbackSet, stream: IO[str]) -> int:
    count = 0
    for row in kto_rows(queryset):
        stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count
