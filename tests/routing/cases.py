"""Requests written for these tests (not taken from any evaluation file), with the tier a
careful operator would pick. ``sys`` is an optional system prompt, ``before`` earlier turns."""

from __future__ import annotations

from typing import Any

Case = tuple[str, str, dict[str, Any]]

CASES: list[Case] = [
    # small: labels, extraction, formatting, lookups, yes/no
    ("small", "Is Lisbon the capital of Portugal? Answer yes or no.", {}),
    ("small", "Which language is this sentence in: 'Det regner i dag'?", {}),
    (
        "small",
        "Extract every phone number from this note: 'Call 020 555 0101 or 07700 900123.'",
        {},
    ),
    ("small", "Convert 'twenty-three' to digits.", {}),
    ("small", "Sort these names alphabetically: Zoe, Adam, Maya, Liam", {}),
    ("small", "What's the German word for 'library'?", {}),
    ("small", "Who painted the Mona Lisa?", {}),
    ("small", "How many sides does a hexagon have?", {}),
    ("small", "Fix the spelling: 'recieve the pakage tomorow'", {}),
    (
        "small",
        "The battery died after two days, very disappointed.",
        {"sys": "Classify the review as positive, negative or mixed. Reply with one word."},
    ),
    (
        "small",
        "Order #88121 arrived damaged, please refund.",
        {"sys": "Extract the order number and return JSON with the key order_id only."},
    ),
    (
        "small",
        "Does this paragraph mention a date? Answer yes or no.\n\n" + "The committee reviewed the "
        "proposals from several districts and agreed to revisit the funding formula. " * 8,
        {},
    ),
    (
        "small",
        "Now put them in reverse order.",
        {"before": ["Sort these numbers: 9, 2, 7", "2, 7, 9"]},
    ),
    # medium: explanations, short writing, simple code, advice, summaries
    ("medium", "Explain how a refrigerator keeps food cold.", {}),
    ("medium", "Write a short thank-you note to my team for finishing the release.", {}),
    ("medium", "Write a Python function that checks whether a number is prime.", {}),
    ("medium", "What are some tips for staying focused while working from home?", {}),
    ("medium", "Summarize the plot of Hamlet in a paragraph.", {}),
    ("medium", "Why do cats purr?", {}),
    ("medium", "How do I undo the last commit in git?", {}),
    ("medium", "What is the difference between a list and a tuple in Python?", {}),
    ("medium", "Any ideas for a vegetarian lunch I can pack for work?", {}),
    (
        "medium",
        "Can you make it sound more cheerful?",
        {"before": ["Write a two-line invitation to our picnic.", "Join us Saturday at noon."]},
    ),
    # large: proofs, math, design, debugging, long-form, constrained planning
    ("large", "Prove that the sum of the first n odd numbers is n squared.", {}),
    ("large", "Show that there is no largest prime number.", {}),
    (
        "large",
        "A car rental costs $45 per day plus $0.20 per mile, and a rival charges $30 per "
        "day plus $0.35 per mile. For a 4-day trip, above how many miles is the first company "
        "cheaper, and by how much does it save at 900 miles?",
        {},
    ),
    (
        "large",
        "Design a multi-tenant job scheduler that guarantees at-least-once execution "
        "across three data centres, and explain how it survives the loss of one of them.",
        {},
    ),
    (
        "large",
        "Our Rust service's latency jumps every few minutes and we suspect lock "
        "contention. Here is the handler:\n```rust\nlet guard = state.lock().unwrap();\n"
        "let v = guard.map.get(&k).cloned();\ndrop(guard);\n```\nFind the root cause.",
        {},
    ),
    (
        "large",
        "Write a 3,000-word report analysing the economic effects of high-speed rail "
        "on mid-sized cities, with counterarguments.",
        {},
    ),
    (
        "large",
        "Plan a 10-day conference schedule for 400 attendees across 6 rooms where no "
        "speaker has two talks on the same day, keynotes never overlap, and the budget is "
        "capped at $80,000.",
        {},
    ),
    (
        "large",
        "What is the probability of getting at least two heads in five fair coin tosses? "
        "Derive it.",
        {},
    ),
    (
        "large",
        "Implement a B-tree in C++ with insertion, deletion and range queries, and analyse "
        "the complexity of each operation.",
        {},
    ),
]
