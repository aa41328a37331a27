"""Where the project's assets live, from this file's location (never the working directory)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAMBDAS = ROOT / "lambdas"
HOST_KEY_BOOTSTRAP = LAMBDAS / "bootstrap" / "publish_host_keys.sh"
RUNNER_DOCKERFILE = "runner/Dockerfile"
# The folder of pipeline folders: the runner image copies it (runner/Dockerfile) and every
# RunStep command names a step by its path under it.
PIPELINES_FOLDER = "sql"
