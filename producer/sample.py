"""Sample prompts for the quick start: a realistic mix, generated offline.

The mix follows what nightly batches look like: many short factual or extraction
prompts, fewer math and code tasks, a few long analytical ones, some exact repeats,
and two bad rows (an empty prompt, a missing one) so every status shows up.
"""

from __future__ import annotations

import random

import pyarrow as pa

_FACTS = [
    "What is the capital of {c}?",
    "Translate 'good morning' into {l}.",
    "Give a one-line definition of {t}.",
    "Is {c} in Europe? Answer yes or no.",
    "Extract the city from: 'Our office moved to {c} last spring.'",
]
_MATH = [
    "A shop sells pens at ${a} each. Tom buys {b} pens and pays with a $100 bill. "
    "How much change does he get? Show your steps.",
    "Solve for x: {a}x + {b} = {c2}. Then derive the value of 2x - 1 and explain each step.",
]
_CODE = [
    "Write a Python function that returns the {a}th Fibonacci number.\n```python\ndef fib(n):\n"
    "    ...\n```\nThen analyse its complexity and compare it with a memoised version.",
    "Debug this code and explain why it fails:\n```js\nfunction sum(xs) {{ let t; for (x of xs)"
    " {{ t += x; }} return t; }}\n```",
]
_ANALYSIS = [
    "Compare and contrast three approaches to {t} in distributed systems. Analyse the "
    "trade-offs, justify a recommendation for a team of {a} engineers, and design a "
    "migration plan in at least 5 steps. The answer must be a table followed by a list.",
]
_WORDS = {
    "c": ["Lisbon", "Nairobi", "Lima", "Oslo", "Hanoi", "Quito", "Perth"],
    "l": ["French", "Swahili", "Japanese", "Portuguese"],
    "t": ["consensus", "idempotency", "backpressure", "sharding", "caching"],
}


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        c=rng.choice(_WORDS["c"]),
        l=rng.choice(_WORDS["l"]),
        t=rng.choice(_WORDS["t"]),
        a=rng.randint(2, 40),
        b=rng.randint(2, 9),
        c2=rng.randint(50, 500),
    )


def sample_prompts(n: int, seed: int = 7) -> pa.Table:
    """``n`` prompt rows (n ≥ 10), deterministic for a given seed."""
    rng = random.Random(seed)
    kinds = [(_FACTS, 0.55), (_MATH, 0.2), (_CODE, 0.15), (_ANALYSIS, 0.1)]
    prompts: list[str | None] = []
    for _ in range(n):
        templates = rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        prompts.append(_fill(rng.choice(templates), rng))
    for i in rng.sample(range(2, n), k=max(1, n // 20)):
        prompts[i] = prompts[i - 1]  # exact repeats exercise dedupe
    prompts[0], prompts[1] = "", None
    return pa.table(
        {
            "prompt_id": [f"sample-{i:06d}" for i in range(n)],
            "prompt": pa.array(prompts, pa.string()),
            "source": ["batch-router sample"] * n,
        }
    )
