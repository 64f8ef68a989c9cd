"""Keeps generation bounded on CPU: in schema-valid (positive) cases, `max_tokens` and
`max_completion_tokens` above MAX_GENERATED are lowered to it, so no generated request asks a chat model
for thousands of tokens. Negative cases are sent as generated."""
import schemathesis
from schemathesis import GenerationMode

MAX_GENERATED = 16
FIELDS = ("max_tokens", "max_completion_tokens")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return
    if not isinstance(case.body, dict):
        return
    for field in FIELDS:
        value = case.body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_GENERATED:
            case.body[field] = MAX_GENERATED
