"""Time of the one redactor (agent_router.secrets.redact) on 100 kB and 1 MB texts: ordinary prose and code
(the baseline), and adversarial runs built from each pattern's trigger (`sk-` runs, `eyJ` runs, PEM headers
without an end, `Bearer`/`api_key:` runs, long token runs, hex dumps, slash runs). Prints ms and the ratio to the
ordinary text of the same length, measured in the same run; asserts nothing.

    python bench/redact.py [--repeat N]
"""

from __future__ import annotations

import argparse
import random
import string
import time

from agent_router import secrets


def texts(n: int) -> dict[str, str]:
    rng = random.Random(1)
    words = ["the", "router", "picks", "a", "model", "def", "import", "x = 1", "cost", "return", "\n"]
    ordinary = " ".join(rng.choice(words) for _ in range(n // 3))[:n]
    def rep(s: str) -> str:
        return (s * (n // len(s) + 1))[:n]
    return {
        "ordinary": ordinary,
        "token run": rep("a"),
        "alnum": "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n)),
        "hex dump": "".join(rng.choice("0123456789abcdef ") for _ in range(n)),
        "slash run": rep("/a"),
        "sk- run": rep("sk-"),
        "eyJ run": rep("eyJ"),
        "eyJ. run": rep("eyJaaaa."),
        "PEM headers": rep("-----BEGIN RSA PRIVATE KEY-----"),
        "PEM + dashes": ("-----BEGIN RSA PRIVATE KEY-----" + "-" * n)[:n],
        "Bearer run": rep("Bearer "),
        "api_key: run": rep("api_key: "),
        "Authorization: run": rep("Authorization: "),
        "AKIA run": rep("AKIAAAAAAAAAAAAAAAAA "),
    }


def best(text: str, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        secrets.redact(text)
        out.append(time.perf_counter() - t0)
    return min(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for n in (100_000, 1_000_000):
        cases = texts(n)
        base = best(cases["ordinary"], args.repeat)
        print(f"\n{n:,} chars          ms   x ordinary")
        for name, text in cases.items():
            t = best(text, args.repeat)
            print(f"  {name:20s} {t * 1000:7.1f}   {t / base:5.1f}")


if __name__ == "__main__":
    main()
