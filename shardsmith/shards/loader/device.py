"""CUDA: pinned host buffers, one non-blocking copy per batch."""

from __future__ import annotations

import numpy as np
import torch


class PinnedRing:
    """A few reusable pinned host buffers; a buffer is reused only after its copy to the device ended."""

    def __init__(self, device: torch.device, slots: int = 4):
        self.device = device
        self.slots: list = [None] * slots
        self.events: list = [None] * slots
        self.i = 0
        self.last = None

    def _slot_of(self, host: torch.Tensor) -> int | None:
        ptr = host.untyped_storage().data_ptr()
        return next((i for i, t in enumerate(self.slots) if t is not None and t.untyped_storage().data_ptr() == ptr),
                    None)

    def take(self, nbytes: int) -> torch.Tensor:
        i = self.i
        self.i = (i + 1) % len(self.slots)
        if self.events[i] is not None:
            self.events[i].synchronize()
            self.events[i] = None
        if self.slots[i] is None or self.slots[i].numel() < nbytes:
            self.slots[i] = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
        self.last = i
        return self.slots[i][:nbytes]

    def to_device(self, batch: dict) -> dict:
        host, views = _shared_buffer(batch)
        slot = self._slot_of(host)
        if slot is None and not host.is_pinned():
            pinned = self.take(host.numel())
            pinned.copy_(host)
            host, slot = pinned, self.last
        dev = host.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        if slot is not None:  # the slot is reused only once this copy has finished
            self.events[slot] = event
        return {name: dev[off: off + size].view(dtype) for name, (off, size, dtype) in views.items()}


def _shared_buffer(batch: dict):
    """The one uint8 buffer under a batch's tensors, and each tensor's (byte offset, bytes, dtype)."""
    first = next(iter(batch.values()))
    storage = first.untyped_storage()
    if any(t.untyped_storage().data_ptr() != storage.data_ptr() for t in batch.values()):
        parts = {k: t.contiguous().view(torch.uint8) for k, t in batch.items()}
        host = torch.cat(list(parts.values())) if parts else torch.empty(0, dtype=torch.uint8)
        offs = np.cumsum([0] + [p.numel() for p in parts.values()])
        return host, {k: (int(offs[i]), p.numel(), batch[k].dtype) for i, (k, p) in enumerate(parts.items())}
    host = torch.empty(0, dtype=torch.uint8).set_(storage)
    spans = {k: (t.storage_offset() * t.element_size(), t.numel() * t.element_size(), t.dtype)
             for k, t in batch.items()}
    lo = min(off for off, _, _ in spans.values())
    hi = max(off + size for off, size, _ in spans.values())
    return host[lo:hi], {k: (off - lo, size, dt) for k, (off, size, dt) in spans.items()}
