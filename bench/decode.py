"""The cost of decoding stream bytes (``CODEC.decode``), per event, without NATS or a database.

    python -m bench.decode [--events 100000] [--rounds 5]

Encodes the synthetic history of bench/synthetic.py once (plain msgspec, so the input does not
depend on the codec under test), then decodes every message ``--rounds`` times and prints the
best round's cost per event in microseconds. Run it on two checkouts (``PYTHONPATH=<tree>``) to
compare. It also times msgspec's typed decode alone (the floor the contract's extra checks are
measured against, in the same process), and the codec on a tenth of the events as another
client's JSON (``json.dumps``: not the canonical bytes, so the codec's exact slow path).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import msgspec

from bench.common import machine
from bench.synthetic import history
from events import CODEC
from events.catalogue import AnyEvent


def best_us(decoders: dict[str, Any], messages: list[bytes], rounds: int) -> dict[str, float]:
    """Best per-event time of each decoder over ``messages``, in microseconds.

    The decoders take turns within each round, so a noisy neighbour slows them alike.
    """
    best = dict.fromkeys(decoders, float("inf"))
    for _ in range(rounds):
        for name, decode in decoders.items():
            started = time.perf_counter()
            for data in messages:
                decode(data)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: t / len(messages) * 1e6 for name, t in best.items()}


def main() -> None:
    """Parse the arguments, run, print one line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    encoder = msgspec.json.Encoder()
    messages = [encoder.encode(event) for event in history(args.events)]
    typed = msgspec.json.Decoder(AnyEvent)
    print(machine())
    print(f"{len(messages)} events, {sum(map(len, messages)) / len(messages):.0f} bytes each")
    found = best_us({"typed": typed.decode, "codec": CODEC.decode}, messages, args.rounds)
    print(f"msgspec typed decode alone: {found['typed']:.2f} us/event")
    print(f"CODEC.decode:               {found['codec']:.2f} us/event")
    # Another client's JSON (spaces after separators, as json.dumps writes): not canonical bytes.
    foreign = [json.dumps(json.loads(m)).encode() for m in messages[: max(1, len(messages) // 10)]]
    other = best_us({"codec": CODEC.decode}, foreign, args.rounds)
    print(f"CODEC.decode, json.dumps:   {other['codec']:.2f} us/event ({len(foreign)} events)")


if __name__ == "__main__":
    main()
