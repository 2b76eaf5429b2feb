"""Retrieval benchmark: the local model's speed and quality, search latency, semantic-cache lookups.

    python bench/retrieval.py [--chunks 10000] [--smoke]

- embedding throughput on one core (texts/s, short sentences and 800-token chunks);
- recall@5 on a labelled set built here (LABELLED: 30 facts, each asked as a paraphrase that shares
  few words with it), for vector-only, BM25-only and the hybrid ranking that parley uses;
- search latency at N chunks (p50, p99) through the same StoreIndex the gateway uses;
- semantic-cache lookup cost (embedding the question + scoring a full 32-entry bucket).
Prints a Markdown table. It never raises: a failed part prints its error in its row.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from parley.filters.cache.semantic import best_match
from parley.providers.local_embed import LocalEmbedder
from parley.retrieval.index import Chunk, StoreIndex

LABELLED = [  # fact, the question that asks for it in other words
    ("The launch code for the rocket is 7421.", "What number do I enter to start the rocket?"),
    ("Lunch in the canteen is served from noon until two o'clock.", "When can I eat a midday meal at work?"),
    ("The Wi-Fi password for guests is sunflower-22.", "How do visitors get onto the wireless network?"),
    (
        "Parking permits are renewed every January at the front desk.",
        "Where and when do I get a new car park pass?",
    ),
    (
        "The fire assembly point is the north corner of the car park.",
        "Where should we gather during an evacuation?",
    ),
    (
        "Expense reports must be filed within thirty days of travel.",
        "What is the deadline for claiming trip costs?",
    ),
    ("The server room is cooled to eighteen degrees Celsius.", "How cold is the data centre kept?"),
    ("Our office dog is a beagle named Biscuit.", "What breed is the company pet?"),
    (
        "The quarterly all-hands meeting happens on the first Monday.",
        "When is the company-wide gathering each quarter?",
    ),
    (
        "Printer jams on the third floor are fixed by facilities.",
        "Who repairs the copier upstairs when paper gets stuck?",
    ),
    ("New hires receive a laptop on their first morning.", "When do new employees get a computer?"),
    (
        "The gym in the basement opens at six in the morning.",
        "What time can I start exercising at the office?",
    ),
    (
        "Vacation requests need manager approval two weeks ahead.",
        "How early must I ask my boss for holidays?",
    ),
    ("The coffee machine is descaled every Thursday.", "When is the espresso maker cleaned?"),
    ("Visitors must sign in at reception and wear a badge.", "What do guests do when they arrive?"),
    (
        "The backup generator is tested on the last Friday of each month.",
        "How often is emergency power checked?",
    ),
    ("Code reviews need two approvals before merging.", "How many people must accept a pull request?"),
    (
        "The on-call engineer is paged through the incident tool.",
        "How is the person on duty alerted at night?",
    ),
    ("Bicycles can be stored in the locked cage by the east entrance.", "Where do I leave my bike?"),
    ("Payroll is processed on the twenty-fifth of each month.", "Which day do salaries get paid?"),
    ("The library closes at nine in the evening on weekdays.", "Until when can I borrow books after work?"),
    ("Meeting rooms are booked through the calendar app.", "How do I reserve a conference room?"),
    ("Recycling bins are emptied every Tuesday morning.", "When is waste collected for plastics and paper?"),
    (
        "The staging database is refreshed from production nightly.",
        "How often does the test database get real data?",
    ),
    ("First aid kits are kept in each kitchen.", "Where can I find bandages?"),
    ("The dress code is casual except for client visits.", "What should I wear to the office?"),
    ("Laptops must use full-disk encryption.", "What security is required on work computers?"),
    ("The annual party is held at the river boathouse.", "Where is the yearly celebration?"),
    ("Desk phones were replaced by a softphone app in March.", "What happened to the landline handsets?"),
    ("Mail for employees is sorted in the post room by noon.", "When are letters ready to collect?"),
]


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def throughput(model: LocalEmbedder, smoke: bool) -> list[str]:
    short = [
        f"sentence {i} about the weather and the plans for the weekend" for i in range(500 if smoke else 5000)
    ]
    long = [" ".join(f"word{j % 997}" for j in range(i, i + 600)) for i in range(20 if smoke else 200)]
    return [
        f"| embedding, short sentences, 1 core | {len(short) / timed(model.embed, short):,.0f} texts/s |",
        f"| embedding, ~800-token chunks, 1 core | {len(long) / timed(model.embed, long):,.0f} texts/s |",
    ]


def recall(model: LocalEmbedder) -> list[str]:
    facts = [f for f, _ in LABELLED]
    vectors = model.embed(facts).vectors
    index = StoreIndex([Chunk(i, "f", t) for i, t in enumerate(facts)], vectors)
    hits = {"vector": 0, "bm25": 0, "hybrid": 0}
    for i, (_, question) in enumerate(LABELLED):
        qv = model.embed([question]).vectors[0]
        hits["vector"] += i in np.argsort(-(vectors @ qv))[:5]
        hits["bm25"] += i in np.argsort(-index.bm25(question))[:5]
        hits["hybrid"] += i in [h.chunk.id for h in index.search(qv, question, 5)]
    n = len(LABELLED)
    return [
        f"| recall@5, {name} ({n} paraphrased questions) | {count / n:.2f} |" for name, count in hits.items()
    ]


def search_latency(model: LocalEmbedder, chunks: int) -> list[str]:
    rng = random.Random(7)
    vocab = [f"term{i}" for i in range(5000)]
    texts = [" ".join(rng.choices(vocab, k=120)) for _ in range(chunks)]
    vectors = model.embed(texts).vectors
    index = StoreIndex([Chunk(i, "f", t) for i, t in enumerate(texts)], vectors.astype(np.float16))
    times = []
    for _ in range(200):
        query = " ".join(rng.choices(vocab, k=8))
        qv = model.embed([query]).vectors[0]
        times.append(timed(index.search, qv, query, 4) * 1000)
    times.sort()
    p99 = times[int(len(times) * 0.99) - 1]
    p50 = statistics.median(times)
    return [f"| search at {chunks:,} chunks (hybrid, top 4) | p50 {p50:.2f} ms, p99 {p99:.2f} ms |"]


def cache_lookup(model: LocalEmbedder) -> list[str]:
    import base64

    entries = [
        {"v": base64.b64encode(v.astype("<f2").tobytes()).decode(), "m": {"role": "assistant"}, "e": 1e12}
        for v in model.embed([f"question number {i}" for i in range(32)]).vectors
    ]
    started = time.perf_counter()
    for _ in range(200):
        best_match(entries, model.embed(["what is question number seven?"]).vectors[0], 0.8)
    per = (time.perf_counter() - started) / 200 * 1e6
    return [f"| semantic-cache lookup (embed + 32 entries) | {per:,.0f} µs |"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--smoke", action="store_true", help="small sizes, for CI")
    args = parser.parse_args()
    model = LocalEmbedder()
    load = timed(model.embed, ["warm up"])
    print("| measure | value |\n|---|---|")
    print(f"| model load (first use) | {load:.2f} s |")
    parts = [
        lambda: throughput(model, args.smoke),
        lambda: recall(model),
        lambda: search_latency(model, 1000 if args.smoke else args.chunks),
        lambda: cache_lookup(model),
    ]
    for part in parts:
        try:
            for row in part():
                print(row, flush=True)
        except Exception as e:
            print(f"| failed | {type(e).__name__}: {e} |")
            traceback.print_exc(file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
