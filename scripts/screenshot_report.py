"""Screenshot an `align report` page in headless Chromium (the system one), e.g. for docs or a pull request.

    python scripts/screenshot_report.py runs/quickstart/latest/report.html report.png [--full] [--width 1280]
        [--height 900] [--clip-height 2400]

Needs playwright (the `test` extra) and a Chromium (scripts/install_chromium.sh). Prints console errors and images
that did not load, and exits 1 if there were any.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

# On a machine that reaches package registries only, Chromium's background calls fail and spam the log: turn them off.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report")
    p.add_argument("out")
    p.add_argument("--full", action="store_true", help="the whole page, not only the first screen")
    p.add_argument("--clip-height", type=int, help="with --full: cut the page at this height (pixels)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=900)
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(Path(args.report).resolve().as_uri(), wait_until="load")
            page.evaluate("document.fonts.ready")
            broken = page.evaluate("[...document.images].filter(i => !i.complete || !i.naturalWidth).length")
            if broken:
                problems.append(f"{broken} image(s) did not load")
            clip = None
            if args.full and args.clip_height:
                height = min(args.clip_height, page.evaluate("document.documentElement.scrollHeight"))
                clip = {"x": 0, "y": 0, "width": args.width, "height": height}
            page.screenshot(path=args.out, full_page=args.full, clip=clip)
        finally:
            browser.close()
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"wrote {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
