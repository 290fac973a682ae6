"""Sample prompts for the quick start: a realistic mix, generated offline.

The mix follows what nightly batches look like: many short factual or extraction
prompts, fewer math and code tasks, a few long analytical ones, some exact repeats,
and two bad rows (an empty prompt, a missing one) so every status shows up.
"""

from __future__ import annotations

import random

import pyarrow as pa

_FACTS = [
    "What is the capital of {k}?",
    "Translate '{p}' into {l}.",
    "Give a one-line definition of {t}.",
    "Is {c} in Europe? Answer yes or no.",
    "Extract the city from: 'Our office moved to {c} in {y}.'",
    "Summarise in one sentence: order #{n} of {a} units shipped to {c} on day {b}.",
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
    "c": [
        "Lisbon",
        "Nairobi",
        "Lima",
        "Oslo",
        "Hanoi",
        "Quito",
        "Perth",
        "Dakar",
        "Porto",
        "Kyoto",
        "Cusco",
        "Tromsø",
        "Gdańsk",
        "Accra",
        "Hobart",
        "Tartu",
    ],
    "k": [
        "Portugal",
        "Kenya",
        "Peru",
        "Norway",
        "Vietnam",
        "Ecuador",
        "Senegal",
        "Japan",
        "Ghana",
        "Estonia",
        "Chile",
        "Nepal",
        "Morocco",
        "Uruguay",
        "Finland",
        "Laos",
    ],
    "l": ["French", "Swahili", "Japanese", "Portuguese", "Polish", "Hindi", "Turkish", "Dutch"],
    "p": [
        "good morning",
        "where is the station?",
        "thank you very much",
        "the bill, please",
        "I am running late",
        "see you tomorrow",
        "how much is this?",
        "happy birthday",
    ],
    "t": [
        "consensus",
        "idempotency",
        "backpressure",
        "sharding",
        "caching",
        "quorum",
        "write-ahead logging",
        "vector clocks",
        "rate limiting",
        "leader election",
    ],
}


_CONTEXT = [
    "Customer #{n} asks:",
    "Ticket {n}:",
    "From the support inbox (case {n}):",
    "Internal request {n} —",
]


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        c=rng.choice(_WORDS["c"]),
        k=rng.choice(_WORDS["k"]),
        p=rng.choice(_WORDS["p"]),
        y=rng.randint(2000, 2026),
        n=rng.randint(10_000, 99_999),
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
        prompt = _fill(rng.choice(templates), rng)
        if rng.random() < 0.7:  # most real prompts carry some context of their own
            prompt = f"{rng.choice(_CONTEXT).format(n=rng.randint(1000, 99_999))} {prompt}"
        prompts.append(prompt)
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
