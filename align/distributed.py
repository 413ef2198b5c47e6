"""Rank awareness for runs that ``accelerate launch`` started on several processes (``align launch`` / launch.sh with
``launch.processes × launch.nodes > 1``). Every rank runs the same ``align run``; this module adds the few
collective steps the pipeline needs, on the process group accelerate's ``PartialState`` sets up exactly as the
TRL trainers would (gloo on CPU, NCCL on GPUs, DeepSpeed's own init when accelerate launched DeepSpeed):

* ``main_only(fn)``: rank 0 does the work (create the run directory, evaluate, compare, write JSON), the other
  ranks wait and receive its result; an error on rank 0 stops every rank with its message (no rank is left
  waiting in a barrier);
* ``main_first(fn)``: rank 0 prepares (builds the tiny model and the synthetic data into the cache), then the
  other ranks run the same call and find the cache ready;
* ``finish_training(...)``: after a training stage the ranks compare a checksum of the trained parameters (ZeRO-3
  shards are gathered first) and the trainer's world size with the launched one; the run stops with a StageError
  naming the ranks if they differ. Then rank 0 saves the model. ``distributed.json`` in the run directory records
  the world size, backend, each rank's settings and each stage's check.

With one process every helper is a plain call.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from pathlib import Path

from align.errors import StageError, UserError
from align.io import atomic_dir, atomic_write_json
from align.models import save_model, vllm_weight_names
from align.models.families import is_vision_config

RECORD = "distributed.json"
ACCELERATE_ENV = ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE", "ACCELERATE_USE_FSDP",
                  "ACCELERATE_MIXED_PRECISION", "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE",
                  "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "ACCELERATE_USE_CPU")  # fmt: skip


def launched_world_size() -> int:
    """Processes the launcher started (torchrun's WORLD_SIZE); 1 outside a launcher."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init(on_gpu: bool, timeout_minutes: float = 180) -> None:
    """Join the process group the launcher prepared (accelerate's PartialState). Nothing to do for one process.
    The timeout is generous: the other ranks wait in a collective while rank 0 evaluates alone (NCCL's default is
    10 minutes)."""
    if launched_world_size() > 1:
        from datetime import timedelta

        from accelerate import PartialState

        PartialState(cpu=not on_gpu, timeout=timedelta(minutes=timeout_minutes))


def is_distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()


def broadcast(obj):
    """Rank 0's ``obj`` on every rank (picklable objects)."""
    if not is_distributed():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    import torch.distributed as dist

    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def main_only(fn, share: bool = True):
    """Run ``fn()`` on rank 0 only; the others wait. Returns rank 0's result on every rank (``share=False``: only on
    rank 0, None on the others). If it raises, rank 0 re-raises and every other rank raises a UserError with the
    same message."""
    if not is_distributed():
        return fn()
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - handed to every rank below
            error = e
    message = None
    if error is not None:
        message = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
    failed, shared = broadcast((message, result if share and error is None else None))
    if error is not None:
        raise error
    if failed is not None:
        raise UserError(f"rank 0 failed: {failed}", "see rank 0's output above for details")
    return result if is_main() else shared


def main_first(fn):
    """Run ``fn()`` on rank 0 first (cache builds), then on the other ranks; each rank gets its own result."""
    if not is_distributed():
        return fn()
    result = main_only(fn, share=False)
    return result if is_main() else fn()


def shutdown() -> None:
    """End of a successful run: every rank arrives, then the process group is closed (else ranks can hang at exit)."""
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------- the record


def rank_info() -> dict:
    import torch

    return {"rank": rank(), "local_rank": int(os.environ.get("LOCAL_RANK", "0")),
            "node_rank": int(os.environ.get("GROUP_RANK", os.environ.get("NODE_RANK", "0"))),
            "host": socket.gethostname(), "pid": os.getpid(), "torch_threads": torch.get_num_threads(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}  # fmt: skip


def record_world(run_path: Path, recipe) -> dict:
    """Write ``distributed.json``: world size, backend, launcher settings and each rank's settings."""
    import torch.distributed as dist

    ranks = gather(rank_info())
    record = {
        "world_size": world_size(),
        "launched_world_size": launched_world_size(),
        "nodes": len({r["node_rank"] for r in ranks}),
        "backend": recipe.launch.backend if world_size() > 1 else "none",
        "process_group_backend": dist.get_backend() if is_distributed() else None,
        "main_address": os.environ.get("MASTER_ADDR"),
        "main_port": os.environ.get("MASTER_PORT"),
        "timeout_minutes": recipe.launch.timeout_minutes,
        "accelerate": {k: os.environ[k] for k in ACCELERATE_ENV if k in os.environ},
        "ranks": ranks,
        "stages": {},
    }
    if is_main():
        atomic_write_json(run_path / RECORD, record)
    return record


def _add_stage_record(run_path: Path, stage: str, entry: dict) -> None:
    path = run_path / RECORD
    record = json.loads(path.read_text()) if path.exists() else {"stages": {}}
    record.setdefault("stages", {})[stage] = entry
    atomic_write_json(path, record)


# ----------------------------------------------------------------------------------- end of a training stage


def is_zero3(model) -> bool:
    return any(hasattr(p, "ds_id") for p in model.parameters())


@contextlib.contextmanager
def full_parameters(model):
    """Every parameter of ``model`` in full on every rank: DeepSpeed ZeRO-3 gathers its shards (read-only; a
    collective, so every rank must enter), anything else holds full parameters already."""
    if not is_zero3(model):
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
        yield


def local_parameters(model) -> int:
    """Parameter elements this rank holds (its shard under ZeRO-3 or FSDP)."""

    def held(p):
        if hasattr(p, "ds_tensor"):
            return p.ds_tensor.numel()
        return p.to_local().numel() if hasattr(p, "to_local") else p.numel()

    return sum(held(p) for p in model.parameters())


def full_parameter_count(model) -> int:
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())


def checksum(model) -> str:
    """SHA-256 over every parameter's name and raw bytes (under ZeRO-3 call it inside ``full_parameters``; FSDP's
    sharded tensors are gathered here, parameter by parameter, on every rank)."""
    import torch

    h = hashlib.sha256()
    for name, p in model.named_parameters():
        t = p.full_tensor() if hasattr(p, "full_tensor") else p
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def replica_infos(model, **extra) -> list[dict]:
    """Every rank's parameter checksum and shard size (plus ``extra``), on every rank. A collective; under ZeRO-3
    call it inside ``full_parameters(model)``."""
    info = {"rank": rank(), **extra, "zero3": is_zero3(model), "local_parameters": local_parameters(model),
            "parameters": full_parameter_count(model), "checksum": checksum(model)}  # fmt: skip
    return gather(info)


def compare_ranks(stage: str, infos: list[dict], launched: int) -> None:
    """Raise a StageError naming the ranks if any trained alone or holds different parameters."""
    alone = [i["rank"] for i in infos if i["trainer_processes"] != launched]
    if alone:
        seen = sorted({i["trainer_processes"] for i in infos if i["rank"] in alone})
        raise StageError(
            f"stage '{stage}': rank(s) {alone} trained in a world of {seen} process(es) although {launched} were "
            "launched: each trained its own copy of the model",
            "on CPU the TRL config needs use_cpu: true (the workbench sets it; do not override it in args)",
        )
    by_sum: dict[str, list[int]] = {}
    for i in infos:
        by_sum.setdefault(i["checksum"], []).append(i["rank"])
    if len(by_sum) > 1:
        groups = "; ".join(f"rank(s) {r}: {c[:16]}" for c, r in by_sum.items())
        raise StageError(
            f"stage '{stage}': the trained parameters differ across ranks ({groups})",
            "the ranks did not train one model together; check the launcher settings in distributed.json",
        )


def finish_training(ctx, trainer, processor, out_dir: Path) -> Path:
    """End of a TRL-trainer stage on every rank: check that the ranks trained one model, record the check in
    distributed.json, and save the model on rank 0 (under ZeRO-3 from the gathered parameters)."""

    model, acc = trainer.model, trainer.accelerator
    if not is_distributed():
        save_model(model, processor, out_dir)
        return out_dir
    with full_parameters(model):
        infos = replica_infos(model, trainer_processes=acc.num_processes, distributed_type=acc.distributed_type.name,
                              device=str(acc.device), steps=trainer.state.global_step,
                              per_device_train_batch_size=trainer.args.per_device_train_batch_size)  # fmt: skip
        entry = {"world_size": world_size(), "distributed_type": acc.distributed_type.name,
                 "identical": len({i["checksum"] for i in infos}) == 1, "ranks": infos}  # fmt: skip
        main_only(lambda: _add_stage_record(ctx.run.path, ctx.stage.name, entry), share=False)
        compare_ranks(ctx.stage.name, infos, launched_world_size())
        if acc.distributed_type.name == "FSDP":
            state = acc.get_state_dict(trainer.model_wrapped)  # collective: the full state dict on rank 0
            main_only(lambda: _save_state_dict(acc.unwrap_model(trainer.model_wrapped), state, processor, out_dir),
                      share=False)  # fmt: skip
        else:
            main_only(lambda: save_model(model, processor, out_dir), share=False)
    forget_deepspeed()
    return out_dir


def _save_state_dict(model, state, processor, out_dir: Path) -> None:
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, state_dict=state)
        processor.save_pretrained(tmp)
        vllm_weight_names(tmp)  # LLaVA: the tower under the names vLLM loads


def forget_deepspeed() -> None:
    """After a DeepSpeed stage: transformers keeps a global pointer to its ZeRO-3 config (alive as long as
    accelerate's state), and every later ``from_pretrained`` would partition the model it loads across the ranks,
    a collective. Rank 0's evaluation or sampling would then wait for ranks that are not there."""
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()


# ------------------------------------------------------------------------------------- launch-time checks


def uses_deepspeed() -> bool:
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def check_data(recipe, train, model_path: str) -> None:
    """DeepSpeed (ZeRO-2 and -3) needs every rank to run the same modules in every step: it has no
    ``find_unused_parameters``. A vision-language model skips its vision tower on a batch without images, so data
    that mixes image and text-only rows puts the ranks' collectives out of step (a crash or a hang). Refuse it."""
    if not (is_distributed() and uses_deepspeed()) or "images" not in train.column_names:
        return
    from datasets import Image, Sequence
    from transformers import AutoConfig

    if not is_vision_config(AutoConfig.from_pretrained(model_path, trust_remote_code=recipe.model.trust_remote_code)):
        return
    images = train.select_columns(["images"]).cast_column("images", Sequence(Image(decode=False)))["images"]
    text_only = sum(1 for row in images if not row)
    if 0 < text_only < len(images):
        raise UserError(
            f"{text_only} of {len(images)} training rows have no image: under DeepSpeed ({recipe.launch.backend}) "
            "a rank whose batch has no image skips the vision tower and the ranks' collectives go out of step",
            "use launch.backend: ddp for mixed image/text data, or keep only rows with images (e.g. data.tasks "
            "without arith)",
        )
