"""Host memory and copies to the device. The host path: pinned host buffers, one non-blocking copy
per batch (``PinnedRing``). The device path: pinned staging slots that blocks are packed into
(``Staging``), and the lane their copies and shuffles run on (``CudaLane``: a side stream; on a CPU,
``HostLane`` runs the same steps at once, which is how CI runs the device path's logic)."""

from __future__ import annotations

import queue

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


class CudaLane:
    """A side stream for the blocks' copies and shuffles, so that they overlap the batch gathers
    on the consumer's stream (and the decoding of the next block on the host)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def alloc(self, nbytes: int) -> torch.Tensor:
        """Device memory for the lane's work (allocated on its stream, so stream-ordered)."""
        with torch.cuda.stream(self.stream):
            return torch.empty(nbytes, dtype=torch.uint8, device=self.device)

    def pinned(self, nbytes: int) -> torch.Tensor:
        return torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)

    def submit(self, work):
        """Queue ``work()`` (torch calls) on the side stream; the returned token is its end."""
        with torch.cuda.stream(self.stream):
            work()
            event = torch.cuda.Event()
            event.record(self.stream)
        return event

    def join(self, token, tensors) -> None:
        """The consumer's stream waits for the work (the host does not), and the memory of
        ``tensors`` is not reused before the consumer's work on it has run."""
        current = torch.cuda.current_stream(self.device)
        current.wait_event(token)
        for t in tensors:
            t.record_stream(current)

    def wait(self, token) -> None:
        """The host waits for the work (before it overwrites the staging slot the work reads)."""
        token.synchronize()

    def settle(self) -> None:
        """The host waits for everything queued on the device, by any library (cuDF's reads)."""
        torch.cuda.synchronize(self.device)


class HostLane:
    """The device path on a CPU "device": each step runs at once, in order. The same code as on a
    GPU, minus asynchrony; CI tests the bookkeeping with a lane that defers the work instead."""

    def __init__(self, device: torch.device):
        self.device = device

    def alloc(self, nbytes: int) -> torch.Tensor:
        return torch.empty(nbytes, dtype=torch.uint8, device=self.device)

    def pinned(self, nbytes: int) -> torch.Tensor:
        return torch.empty(nbytes, dtype=torch.uint8)

    def submit(self, work):
        work()

    def join(self, token, tensors) -> None:
        pass

    def wait(self, token) -> None:
        pass

    def settle(self) -> None:
        pass


def make_lane(device: torch.device):
    return CudaLane(device) if device.type == "cuda" else HostLane(device)


class Staging:
    """Pinned host slots that blocks are packed into before their copy to the device. A slot is
    taken by one thread at a time and reused only once the copy that read it has finished."""

    def __init__(self, lane, slots: int, nbytes: int = 0):
        self.lane, self.nbytes = lane, nbytes
        self.buffers: list = [None] * slots
        self.free: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(slots):
            self.free.put((i, None))

    def acquire(self, nbytes: int) -> tuple[int, torch.Tensor]:
        """A free slot (waiting for one, then for its last copy) holding ``nbytes``: (slot, buffer)."""
        i, token = self.free.get()
        if token is not None:
            self.lane.wait(token)
        if self.buffers[i] is None or self.buffers[i].numel() < nbytes:
            self.buffers[i] = None  # let the old one go first
            self.buffers[i] = self.lane.pinned(max(nbytes, self.nbytes))
        return i, self.buffers[i][:nbytes]

    def release(self, i: int, token) -> None:
        """Slot ``i`` is free again once the work ``token`` (its copy; None: nothing) has ended."""
        self.free.put((i, token))
