"""Stream a compiled dataset into PyTorch: ``ShardDataset`` (an IterableDataset of batches) and
``ShardLoader`` (a DataLoader over it that keeps the resume state). The one package that imports torch.

    >>> ds = ShardDataset("shards/criteo_synthetic", split="train", batch_size=1024, seed=7)  # doctest: +SKIP
    >>> loader = ShardLoader(ds, num_workers=2)                                              # doctest: +SKIP
    >>> for epoch in range(start_epoch, epochs):                                            # doctest: +SKIP
    ...     ds.set_epoch(epoch)
    ...     for batch in loader:          # {"label": tensor[1024], "I1": tensor[1024], ...}
    ...         step(batch)
    ...         if time_to_checkpoint:
    ...             save({"model": ..., "data": loader.state_dict()})

Each batch is a dict of 1-D tensors, one per column, all views of one buffer (so a batch crosses
from a DataLoader worker in one shared-memory segment and to the GPU in one copy). Rows are read a
unit (Parquet row group) at a time, a block of units at a time, and gathered into batches with
NumPy ``take``: there is no per-sample Python on the way. A background thread reads the next block
while the current one is gathered.

Order, split over ranks and workers, equal batch counts and resuming: see ``shards/order.py``.
What that means in use:

* ranks and world size come from ``torch.distributed`` when it is initialised (or ``rank=`` and
  ``world_size=``); workers from the DataLoader;
* every rank yields ``len(dataset)`` batches per epoch (``uneven="pad"`` or ``"drop"``);
* ``set_epoch(n)`` before each epoch (as with DistributedSampler); once an epoch's last batch is
  delivered the position is the next epoch's start, so iterating again (or restoring a state
  saved then) starts epoch n + 1, unless ``set_epoch`` names another;
* ``state_dict()`` / ``load_state_dict()``: save the state on any rank at a step that all ranks
  reached (the states of all ranks are equal), restore it on every rank of the new job, on any
  number of ranks and workers. It is plain JSON-able data. Counting is done in the process that
  consumes the batches: iterate ``ShardLoader`` (or the dataset itself, without workers); a plain
  DataLoader with workers reads the same batches but cannot count them, and persistent workers
  would miss ``set_epoch`` and ``load_state_dict``, so ShardLoader refuses them.

With ``device="cuda"`` batches are assembled on the GPU (``assemble="device"``): whole blocks are
copied there once, shuffled and cut into batches there, the same batches as on the host.

Inside: ``dataset`` (the dataset's state machine: epochs, ranks, resuming), ``transport`` (the
loader that interleaves DataLoader workers' messages back into order), ``blocks`` (reading the
stream's blocks ahead on threads), ``layout`` (how a batch lies in memory), ``device``
(pinned buffers, staging slots, and the side stream copies run on), ``gather`` (the device path:
blocks to the device, batches cut there), ``permute`` (a block's row permutation computed on the
device), ``gpudecode`` (``assemble="cudf"``: blocks decoded by cuDF).
"""

from shardsmith.shards.loader.dataset import ShardDataset
from shardsmith.shards.loader.transport import ShardLoader

__all__ = ["ShardDataset", "ShardLoader"]
