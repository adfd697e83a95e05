"""`python -m idream describe`: item descriptions written by a chat LLM, cached and resumable."""

from __future__ import annotations

import sys

from idream.cli.common import CLIError


def add_parser(sub) -> None:
    """The describe subcommand."""
    d = sub.add_parser("describe", help="write item descriptions with a chat LLM (cached, resumable)")
    d.add_argument("--dataset", default="ml-100k", metavar="NAME|DIR",
                   help="ml-100k or a dataset folder (default: %(default)s)")
    d.add_argument("--llm", required=True, metavar="MODEL", help="chat model, e.g. gpt-4o-mini")
    d.add_argument("--max-items", type=int, default=None, metavar="N",
                   help="describe at most N items this run (default: all)")
    d.add_argument("--concurrency", type=int, default=4, metavar="N",
                   help="requests in flight (default: %(default)s)")
    d.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="cache folder (default: ~/.cache/idream)")
    d.add_argument("--dry-run", action="store_true", help="print the plan, make no request")
    d.add_argument("--quiet", action="store_true", help="no progress bar")


def run(a) -> int:
    from urllib.parse import urlsplit

    from idream.data.datasets import load_dataset
    from idream.text.llm import describe_catalog, descriptions_path, plan_descriptions
    from idream.text.openai_backend import base_url

    if a.max_items is not None and a.max_items < 0:
        raise CLIError("--max-items must be 0 or more")
    if a.concurrency < 1:
        raise CLIError("--concurrency must be at least 1")
    ds = load_dataset(a.dataset)
    path = descriptions_path(ds.name, a.cache_dir)
    url = urlsplit(base_url() or "https://api.openai.com/v1")
    where = url.hostname + (f":{url.port}" if url.port else "") if url.hostname else "OPENAI_BASE_URL"

    def show(plan) -> None:
        capped = f" (--max-items {a.max_items})" if plan.requests < plan.missing else ""
        print(f"{ds.name}: {plan.total} items, {plan.cached} already described by {a.llm}, "
              f"{plan.missing} to describe")
        print(f"will make {plan.requests} chat requests{capped} to {a.llm} at {where} "
              f"(concurrency {a.concurrency}; retries come on top)", flush=True)

    if a.dry_run:
        show(plan_descriptions(ds.all_item_meta(), a.llm, path, a.max_items, ds.item_kind))
        return 0
    s = describe_catalog(ds.all_item_meta(), a.llm, path, max_items=a.max_items,
                         concurrency=a.concurrency, progress=not a.quiet, on_plan=show,
                         kind=ds.item_kind)
    print(f"{s['complete']}/{s['total']} items described by {a.llm} ({s['written']} new, "
          f"{s['retries']} retries); cache: {path}")
    if s["skipped"]:
        print(f"the server refused {len(s['skipped'])} items (ids {', '.join(s['skipped'][:10])}); "
              "see the warnings above", file=sys.stderr)
        return 1
    if s["complete"] < s["total"]:
        print(f"{s['total'] - s['complete']} items still lack a description; run the command "
              "again to continue")
    return 0
