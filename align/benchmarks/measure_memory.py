"""Peak memory of a multiple-choice benchmark run on a large split, with a stand-in model (no weights needed).

    python -m align.benchmarks.measure_memory --out /tmp/mem                 # 3,000 rows, full split and --limit 100
    python -m align.benchmarks.measure_memory --out /tmp/mem --code /work/main   # the same with another checkout

Writes a K-SEED split in its hub layout (``question_id``, ``question``, ``choice_a``–``choice_d``, ``answer``,
``data_type``, ``image`` as an HF Image column) with synthetic JPEG photos at the sizes such sets usually hold
(512×384 to 1024×768), then runs ``k-seed`` on it in a fresh process per setting and reports that process's peak
resident memory (``ru_maxrss``). The stand-in model answers "A" after reading every pixel of its images, so images
are really decoded; the model's own memory is not part of the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SIZES = [(640, 480), (800, 600), (1024, 768), (512, 384)]

CHILD = r"""
import json, resource, sys
from align.benchmarks.run import run_benchmarks
from align.recipe import validate
from rollouts.base import Completion, Engine

class StandIn(Engine):
    name = "stand-in"
    def generate(self, prompts, images, sampling):
        for imgs in images:
            for img in imgs:
                img.tobytes()  # every pixel read
        return [[Completion("A", [1], [0.0], "stop")] for _ in prompts]

source, limit = sys.argv[1], (int(sys.argv[2]) or None)
spec = {"name": "k-seed", "source": source, "max_new_tokens": 8, **({"limit": limit} if limit else {})}
recipe = validate({"name": "mem", "rollout": {"engine": "hf"}, "eval": {"batch_size": 32, "benchmarks": [spec]}})
m = run_benchmarks("stand-in", recipe, sys.argv[3], engine=StandIn(), log=lambda *_: None)
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "n": m["bench/k-seed/n"]}))
"""


def write_split(out: Path, rows: int, seed: int = 0) -> Path:
    """A K-SEED-layout parquet of ``rows`` questions with synthetic JPEG photos; returns the dataset folder."""
    import io

    import numpy as np
    from datasets import Dataset, Features, Value
    from datasets import Image as HFImage
    from PIL import Image

    folder = out / "K-SEED-large"
    target = folder / "data" / "test-00000-of-00001.parquet"
    if target.exists():
        return folder
    rng = np.random.default_rng(seed)

    def photo(i: int) -> bytes:
        w, h = SIZES[i % len(SIZES)]
        base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
        noisy = np.clip(base * rng.uniform(0.3, 1.0, 3) + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, format="JPEG", quality=85)
        return buf.getvalue()

    def gen():
        for i in range(rows):
            yield {"question_id": str(i), "question": "이미지에 보이는 것은 무엇인가요?", "choice_a": "고양이",
                   "choice_b": "강아지", "choice_c": "자동차", "choice_d": "나무", "answer": "ABCD"[i % 4],
                   "data_type": "image", "image": {"bytes": photo(i), "path": None}}  # fmt: skip

    features = Features({**{k: Value("string") for k in ("question_id", "question", "choice_a", "choice_b",
                                                         "choice_c", "choice_d", "answer", "data_type")},
                         "image": HFImage()})  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_generator(gen, features=features).to_parquet(str(target))
    return folder


def measure(code: Path, source: Path, limit: int, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1", "HF_DATASETS_CACHE": str(out / "hf-cache")}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(source), str(limit), str(out / "run")], env=env,
                          capture_output=True, text=True, cwd=code, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({code}, limit {limit}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="work folder (the split is written once and reused)")
    p.add_argument("--rows", type=int, default=3000)
    p.add_argument("--limit", type=int, default=100, help="the --limit setting measured beside the full split")
    p.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[2], help="checkout to measure")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    source = write_split(args.out, args.rows)
    size = sum(f.stat().st_size for f in source.rglob("*.parquet")) / 2**20
    print(f"split: {args.rows} rows, {size:.0f} MiB of JPEG in parquet ({source})")
    for limit in (0, args.limit):
        r = measure(args.code, source, limit, args.out)
        label = "full split" if not limit else f"--limit {limit}"
        print(f"{args.code}: {label}: {r['n']:.0f} questions, peak RSS {r['peak_rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
