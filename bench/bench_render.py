"""Benchmark one render of a bundled prompt: ``Prompt.render`` vs bare Jinja.

For each prompt (``support.answer.cancel_order``, a support answer with three partials
and few-shot turns; ``banking.intent_fewshot``, a 77-intent classifier with one example per
intent) and its first example:

* **promptlib**: ``prompt.render(**example.inputs)``: input validation (pydantic, strict
  types), then every message rendered in the sandbox with its limits;
* **bare Jinja**: the same message sources rendered by templates compiled once in a plain
  ``jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)``
  with a ``DictLoader`` of the partials. Each source gets the same final-newline rule as
  promptlib's (one trailing newline dropped), so both produce identical messages, which the
  script checks.

Both are warmed up (templates compiled) before timing. Each repeat times ``--number``
renders of each side, the sides interleaved; the median time per render over
``--repeats`` repeats is reported. Target (from the issue): promptlib <= 2x bare Jinja.

Run: ``python bench/bench_render.py`` (``--number N``, ``--repeats N``, ``--no-write``).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _report import write_section  # noqa: E402

import promptlib  # noqa: E402

TARGET = 2.0
PROMPTS = ("support.answer.cancel_order", "banking.intent_fewshot")


def bare_renderer(
    prompt: Any, partials: dict[str, str], only: list[int] | None = None
) -> Callable[[], list[str]]:
    env = jinja2.Environment(
        loader=jinja2.DictLoader(partials),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    sources = [m.content for m in prompt.messages] if prompt.is_chat else [prompt.template]
    if only is not None:
        sources = [sources[i] for i in only]
    templates = [env.from_string(s[:-1] if s.endswith("\n") else s) for s in sources]
    inputs = dict(prompt.examples[0].inputs)

    def render() -> list[str]:
        return [t.render(inputs) for t in templates]

    return render


def dynamic_renderer(
    prompt: Any, inputs: dict[str, Any]
) -> tuple[list[int], Callable[[], list[str]]]:
    """The messages with a tag or an expression, rendered one by one through the sandboxed
    renderer (internal API): what the sandbox costs where code runs."""
    renderer, compiled = prompt._renderer, prompt._templates()
    variables = prompt.check_inputs(inputs)
    dynamic = [i for i, p in enumerate(prompt._parsed) if p.text is None]

    def render() -> list[str]:
        return [renderer.render(compiled[i], variables) for i in dynamic]

    return dynamic, render


def per_call(fn: Callable[[], object], number: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    library = promptlib.load(ROOT)
    rows = []
    verdicts = []
    for prompt_id in PROMPTS:
        prompt = library[prompt_id]
        inputs = dict(prompt.examples[0].inputs)

        def ours(prompt: Any = prompt, inputs: dict[str, Any] = inputs) -> list[str]:
            return [m.content for m in prompt.render(**inputs)]

        bare = bare_renderer(prompt, dict(library.partials))
        if ours() != bare():
            raise SystemExit(f"{prompt_id}: promptlib and bare Jinja render differently")
        messages = ours()
        dynamic, ours_dynamic = dynamic_renderer(prompt, inputs)
        bare_dynamic = bare_renderer(prompt, dict(library.partials), dynamic)
        if ours_dynamic() != bare_dynamic():
            raise SystemExit(f"{prompt_id}: dynamic messages render differently")
        pairs = {"whole prompt": (ours, bare), "dynamic messages": (ours_dynamic, bare_dynamic)}
        times: dict[str, list[float]] = {f"{k} {side}": [] for k in pairs for side in "ob"}
        for _ in range(args.repeats):
            for what, (mine, theirs) in pairs.items():
                times[f"{what} o"].append(per_call(mine, args.number))
                times[f"{what} b"].append(per_call(theirs, args.number))
        for what in pairs:
            ours_us = statistics.median(times[f"{what} o"]) * 1e6
            bare_us = statistics.median(times[f"{what} b"]) * 1e6
            ratio = ours_us / bare_us
            if what == "whole prompt":
                verdict = "met" if ratio <= TARGET else "**missed**"
                verdicts.append(f"`{prompt_id}` {ratio:.2f}x: {verdict}")
                shown = messages
                label = f"`{prompt_id}`: `Prompt.render`"
            else:
                shown = [messages[i] for i in dynamic]
                label = f"`{prompt_id}`: only its messages with code, `Renderer.render` each"
            rows.append(
                f"| {label} | {len(shown)} | {sum(map(len, shown)):,} | "
                f"{ours_us:.1f} | {bare_us:.1f} | {ratio:.2f}x |"
            )
    body = f"""
One render of a bundled prompt with its first example: `Prompt.render(**inputs)` (input
validation, then every message rendered in the sandbox with its limits) vs the same
message sources rendered by templates compiled once in a plain
`jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)` with a
`DictLoader` of the partials (outputs checked identical). Median of {args.repeats} repeats
of {args.number:,} renders per side, interleaved.

Most messages of a few-shot prompt are plain text (example turns, in `{{% raw %}}` or without
any tag): promptlib recognises them when it parses them and returns their text without
running code, which is why a whole prompt renders faster than with bare Jinja. The second
row of each prompt compares only the messages that run code (the system message with its
partials, the final user message), without the input validation: the sandbox's own cost.

| prompt | messages | characters | promptlib µs | bare Jinja µs | ratio |
| --- | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

Target: promptlib <= {TARGET:g}x bare Jinja: {"; ".join(verdicts)}.
"""
    if args.no_write:
        print(body)
    else:
        write_section("render", "python bench/bench_render.py", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
