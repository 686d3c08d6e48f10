"""Names the stub does not provide: importable (torchmetrics imports some at module level), unusable."""


def placeholder(module: str):
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise NotImplementedError(f"torchvision stub: {module}.{name} is not available in the contract venv")

        unavailable.__name__ = name
        return unavailable

    return __getattr__
