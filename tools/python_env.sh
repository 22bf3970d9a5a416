# Sourced by the launchers: sets PYTHON to the interpreter that has the toolkit installed, so the
# scripts work from a plain shell (venv not activated, no `torchrun` on PATH).
# Order: $PYTHON if set, the active virtual environment, the repository's .venv, then python3.
if [ -z "${PYTHON:-}" ]; then
    if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
        PYTHON="$VIRTUAL_ENV/bin/python"
    elif [ -x "$(pwd)/.venv/bin/python" ]; then
        PYTHON="$(pwd)/.venv/bin/python"
    else
        PYTHON="$(command -v python3 || command -v python)"
    fi
fi
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "error: '$PYTHON' cannot import torch; run 'bash tools/setup.sh' or set PYTHON=/path/to/venv/bin/python" >&2
    exit 1
fi
