"""Running steps on a cluster's master node over SSH: transport, streaming, and the SSH executor."""

import importlib
import importlib.util
import sys
import types


class _DeferredInvoke(types.ModuleType):
    """Stands in for `invoke` until its first use.

    paramiko imports invoke (140 ms, a third of the runner's SSH start-up) only to run the
    `Match exec` lines of an ssh_config, which most configs lack.
    """

    def __getattr__(self, name: str) -> object:
        if sys.modules.get("invoke") is self:
            del sys.modules["invoke"]
        real = importlib.import_module("invoke")
        self.__dict__.update(real.__dict__)
        return getattr(real, name)


def _defer_invoke() -> None:
    # A LazyLoader module would not do: the import statement reads its __spec__, which loads it.
    if "invoke" not in sys.modules and importlib.util.find_spec("invoke") is not None:
        sys.modules["invoke"] = _DeferredInvoke("invoke")


_defer_invoke()

from runner.remote.executor import RemoteSettings, SSHExecutor  # noqa: E402

__all__ = ["RemoteSettings", "SSHExecutor"]
