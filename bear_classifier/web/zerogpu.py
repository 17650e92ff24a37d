"""ZeroGPU, the Space hardware of free accounts: its `spaces` package must be imported before gradio and torch, and
ZeroGPU stops an app without a `@spaces.GPU` function. Anywhere else `spaces` does nothing but cost 0.3-0.7 s of
every start, so it is imported only there. A leaf: nothing heavy is imported before it."""

from __future__ import annotations

from bear_classifier.settings import Settings


def prepare(settings: Settings) -> None:
    """On ZeroGPU (`settings.zero_gpu`): import `spaces` and give it the GPU function it requires. Call it before
    gradio or torch is imported."""
    if not settings.zero_gpu:
        return
    import spaces

    @spaces.GPU(duration=5)  # `spaces` keeps it: the start-up report counts the functions it has seen
    def zerogpu_requirement() -> None:
        """Never called: inference stays on the CPU, where it was measured, so visitors spend no GPU quota and
        never wait for a GPU to be attached."""
