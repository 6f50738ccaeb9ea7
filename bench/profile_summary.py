"""Summarise a py-spy raw profile (``python -m bench --profile DIR``).

    python -m bench.profile_summary DIR/kaiwa-burst-500.txt

Prints, per thread, the share of samples (percent) of the leaf frames (self
time) and of the inclusive frames from Kaiwa, Channels, uvicorn and
websockets.
"""

import sys
from collections import Counter

WATCHED = ("kaiwa/", "channels/", "uvicorn/", "websockets/", "django/db")


def summarize(path: str, top: int = 12) -> str:
    """The summary of one collapsed-stack file as text."""
    threads: dict[str, tuple[Counter[str], Counter[str]]] = {}
    totals: Counter[str] = Counter()
    with open(path) as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            thread = (
                "main" if frames[0].startswith(("<module>", "_run_module_as_main")) else "other"
            )
            leaf, inclusive = threads.setdefault(thread, (Counter(), Counter()))
            n = int(count)
            totals[thread] += n
            leaf[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n
    out = []
    for thread, (leaf, inclusive) in threads.items():
        total = totals[thread]
        out.append(f"{thread} thread: {total} samples")
        out.append("  self time:")
        out += [f"    {n / total * 100:5.1f}%  {f}" for f, n in leaf.most_common(top)]
        out.append("  inclusive (Kaiwa, Channels, uvicorn, websockets, Django db):")
        watched = [(f, n) for f, n in inclusive.most_common() if any(w in f for w in WATCHED)]
        out += [f"    {n / total * 100:5.1f}%  {f}" for f, n in watched[:top]]
    return "\n".join(out)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"== {name}")
        print(summarize(name))
