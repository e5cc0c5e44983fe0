"""Global memory of the emulator: tensors with written-masks, last writers and bounds checks.

A `Tensor` is a region of device global memory (an input, an output, or ``pl.create_tensor``
scratch). It remembers which elements were ever written and, per element, which parallel
block wrote it last, so the runner can report unwritten output and the race detector
(`equiv.tile.races`) two blocks of one stage writing the same element; an access outside the
tensor is clipped and sent to the out-of-range detector (`equiv.tile.bounds`) with the
kernel's file and line. Loads and stores are events of the run's stream (`equiv.tile.events`).
"""

from __future__ import annotations

import numbers
from typing import Callable, Sequence

import torch

from equiv import dtypes
from equiv.dtypes import DType
from equiv.tile.context import current
from equiv.tile.errors import KernelError
from equiv.tile.sites import intern_site, kernel_site

Window = tuple[tuple[int, int], ...]  # per dimension [start, stop)


class _LazyMap:
    """A per-element bookkeeping map of a `Tensor` (written-mask, last writer), made filled with
    `fill` at its first use, so inputs that are only read never pay for it. The map sits in a
    box shared by shallow copies (``__dict__.update``): a copy and its source see one map;
    assigning the attribute (a view of another map) gives the tensor its own box."""

    def __init__(self, dtype: torch.dtype, fill: int | bool):
        self.dtype, self.fill = dtype, fill

    def __set_name__(self, owner: type, name: str) -> None:
        self.box = f"_{name}_box"

    def __get__(self, tensor: "Tensor | None", owner: type) -> torch.Tensor:
        if tensor is None:
            return self  # type: ignore[return-value]
        box = tensor.__dict__[self.box]
        value = box[0]
        if value is None:
            value = box[0] = torch.full(tensor.shape, self.fill, dtype=self.dtype, device=tensor.data.device)
        elif type(value) is _Derived:
            value = box[0] = value.fn(self.__get__(value.source, owner))
        return value

    def __set__(self, tensor: "Tensor", value: torch.Tensor) -> None:
        tensor.__dict__[self.box] = [value]

    def derive(self, view: "Tensor", source: "Tensor", fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """`view`'s map is ``fn(source's map)``, made when first used (a view of a Pro weight
        must not make the weight's maps: 5 bytes an element)."""
        view.__dict__[self.box] = [_Derived(source, fn)]

    def made(self, tensor: "Tensor") -> bool:
        value = tensor.__dict__[self.box][0]
        return self.made(value.source) if type(value) is _Derived else value is not None


class _Derived:
    """A view's bookkeeping map not made yet: `fn` of `source`'s map."""

    __slots__ = ("source", "fn")

    def __init__(self, source: "Tensor", fn: Callable[[torch.Tensor], torch.Tensor]):
        self.source, self.fn = source, fn


def view_tensor(source: "Tensor", data: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor],
                cls: type | None = None) -> "Tensor":
    """A tensor over part of `source`'s memory: ``data = fn(source.data)``; its written-mask,
    last-writer and site maps are `fn` of `source`'s, made only when first used."""
    view = (cls or type(source)).__new__(cls or type(source))
    view.__dict__.update(source.__dict__)
    view.__dict__.pop("_scalar_views", None)
    view.data = data
    Tensor.written.derive(view, source, fn)  # type: ignore[attr-defined]
    Tensor.writer.derive(view, source, fn)  # type: ignore[attr-defined]
    if "site_ids" in source.__dict__:
        view.site_ids = fn(source.site_ids)
    return view


# Inputs at least this large are lent to a kernel run rather than copied (`Tensor.from_torch`).
BORROW_BYTES = 64 << 20


class Tensor:
    """A global-memory tensor of the emulator (what a kernel receives and ``create_tensor`` makes)."""

    # Block tokens of each element's last writer (4 bytes an element: more than int8 weights).
    writer = _LazyMap(torch.int32, -1)
    # Whether each element was ever written; a fully written tensor (an input) starts all True,
    # made at its first use (1 byte an element: as much as int8 weights themselves).
    written = _LazyMap(torch.bool, True)

    def __init__(self, name: str, shape: Sequence[int], dtype: DType, data: torch.Tensor | None = None,
                 written: bool = False):
        ctx = current()
        self.name = name
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        if ctx.batch is not None:
            # One tensor per block, not one shared: the stage runs one block at a time. (Run
            # batched, such stages measured no faster: their cost is arithmetic, not dispatch.)
            ctx.batch.stop(f"tensor {name} allocated by each block")
        # Stored narrow (bf16 as float32, int8 as int8, ...): exact, and Pro-size weights fit.
        self.data = (ctx.poison(self.shape, dtype, into=None) if data is None else data).to(ctx.device, dtype.storage)
        # Memory that starts as poison (an output, scratch): its reads of elements never
        # written are reads of uninitialised memory (`check_initialised`). Views share it.
        self.__dict__["_starts_poisoned"] = data is None
        if tuple(self.data.shape) != self.shape:
            raise ValueError(f"{name}: data shape {tuple(self.data.shape)} != declared {self.shape}")
        self.__dict__["_written_box"] = [None if written else
                                         torch.zeros(self.shape, dtype=torch.bool, device=ctx.device)]
        self.__dict__["_writer_box"] = [None]
        if ctx.observed:
            # Per element, the interned kernel site of its last store (writer attribution),
            # kept only in observed runs; a fully written tensor (an input) gets it at its first
            # store (4 bytes an element: Pro int8 weights would need 13 GB of it).
            if written:
                self.__dict__["_site_ids_lazy"] = True
            else:
                self.site_ids = torch.full(self.shape, -1, dtype=torch.int32, device=ctx.device)

    @property
    def written_allocated(self) -> bool:
        """Whether the written-mask exists yet (a fully written tensor makes it at first use)."""
        return Tensor.written.made(self)  # type: ignore[attr-defined]

    @classmethod
    def from_torch(cls, name: str, value: torch.Tensor, borrow: bool = False,
                   dtype: dtypes.DType | None = None) -> "Tensor":
        """A global tensor holding `value`: a copy (the kernel may write its inputs, and the
        caller reuses them). With `borrow`, a large `value` already in storage form is used
        in place: the run copies it before its first write and restores it when it ends
        (`RunContext.before_write`, `give_back`), so Pro-size weights are held once. `dtype`:
        the DSL type `value` holds, when `value` is that type's storage form (bf16 as float32)."""
        dt = dtype or dtypes.from_torch(value.dtype)
        ctx = current()
        if (borrow and value.dtype == dt.storage and value.device == ctx.device and value.is_contiguous()
                and value.storage_offset() == 0 and value.nbytes == value.untyped_storage().nbytes()
                and value.nbytes >= BORROW_BYTES and value.untyped_storage().data_ptr() not in ctx.borrowed):
            ctx.borrowed[value.untyped_storage().data_ptr()] = [value, None]
            return cls(name, value.shape, dt, value, written=True)
        return cls(name, value.shape, dt, value.to(dt.storage, copy=True), written=True)

    def to_torch(self) -> torch.Tensor:
        return self.data.to(self.dtype.torch_dtype)

    def __repr__(self) -> str:
        return f"Tensor({self.name}, {list(self.shape)}, {self.dtype!r})"

    # -- reads of uninitialised memory ------------------------------------------------------
    def unset_reads(self) -> bool:
        """Whether a read of this tensor may need checking: it started as poison and the
        running run has not read uninitialised memory yet (one check per run suffices)."""
        return bool(self.__dict__.get("_starts_poisoned")) and current().uninitialised is None

    def check_initialised(self, win: Window, mask: torch.Tensor | None = None) -> None:
        """The running code reads `win` (inside this tensor; where `mask`): any element of it
        never written is a read of uninitialised memory (`RunContext.read_uninitialised`)."""
        if not self.unset_reads() or not all(b > a for a, b in win):
            return
        unset = ~self.written[self._slices(win)]
        if mask is not None:
            unset = unset & mask.to(unset.device)
        if bool(unset.any()):
            first = [a + int(i) for (a, _), i in zip(win, unset.nonzero()[0].tolist())]
            self.note_unset(first)

    def note_unset(self, index: Sequence[int]) -> None:
        """Element `index` of this tensor, never written, was read."""
        current().read_uninitialised(f"a read of {self.name}[{', '.join(map(str, index))}], never written")

    # -- windows --------------------------------------------------------------------------
    def window(self, key) -> Window:
        """Turn an index key (slices / ints, missing trailing dims = full) into a window.

        Like the DSL, the extent of ``a:b`` is ``b - a``; it is NOT clipped to the tensor.
        """
        return tuple((int(a), int(b)) for a, b in self.bounds(key))

    def bounds(self, key) -> list[tuple]:
        """Per dimension (start, stop) of an index key, as the kernel computed them (a batched
        stage's per-block values stay `equiv.tile.lanes.Lanes`); `window` makes them ints."""
        if not isinstance(key, tuple):
            key = (key,)
        if len(key) > len(self.shape):
            raise KernelError(f"{self.name}: {len(key)} indices for a {len(self.shape)}-d tensor")
        out = []
        for dim, size in enumerate(self.shape):
            k = key[dim] if dim < len(key) else slice(None)
            if isinstance(k, slice):
                if k.step not in (None, 1):
                    raise KernelError(f"{self.name}: strided slices are not supported")
                out.append((0 if k.start is None else k.start, size if k.stop is None else k.stop))
            else:
                if isinstance(k, numbers.Real):
                    k = int(k)  # an element index: the one element at int(k)
                out.append((k, k + 1))
        return out

    def _clip(self, win: Window, kind: str, mask: torch.Tensor | None = None) -> tuple[Window, bool]:
        """`win` cut to the tensor, and whether it was cut. Elements outside the tensor are an
        out-of-range access only where `mask` (the part of the window the device actually
        reads or writes: a tile's valid shape) selects them."""
        clipped = tuple((max(a, 0), min(b, n)) for (a, b), n in zip(win, self.shape))
        if clipped == win:
            return win, False
        total = 1
        inside = 1
        for (a, b), (c, d) in zip(win, clipped):
            total *= max(b - a, 0)
            inside *= max(d - c, 0)
        if mask is not None:
            # Count only the selected elements past the edge: a tile whose valid rows end at
            # the tensor's edge touches nothing outside it, however large the tile.
            extent = [max(b - a, 0) for a, b in win]
            sel = mask.reshape([-1] + extent).any(0) if mask.dim() > len(extent) else mask.expand(extent)
            total = int(sel.sum())
            inside = int(sel[self._slices(clipped, win)].sum()) if all(d > c for c, d in clipped) else 0
            if total == inside:
                return clipped, True
        ctx = current()
        if not ctx.fan.out_of_range and ctx.batch is not None:
            # Nobody reports it, yet a batched stage must still replay block by block.
            ctx.batch.stop(f"a {kind} finding on {self.name}")
        if ctx.fan.out_of_range:
            idx = ", ".join(f"{a}:{b}" for a, b in win)
            detail = (f"{'read of' if kind == 'oob-read' else 'write to'} {self.name}[{idx}] "
                      f"but {self.name} has shape {list(self.shape)}")
            ctx.out_of_range(kind, self.name, detail, list(win), count=total - inside, site=kernel_site())
        return clipped, True

    @staticmethod
    def _slices(win: Window, origin: Window | None = None) -> tuple[slice, ...]:
        if origin is None:
            return tuple(slice(a, b) for a, b in win)
        return tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(win, origin))

    def load(self, win: Window) -> torch.Tensor:
        """Container values of `win`; parts outside the tensor read as poison."""
        shape = [b - a for a, b in win]
        if any(s < 0 for s in shape):
            raise KernelError(f"{self.name}: empty or negative window {win}")
        inside, clipped = self._clip(win, "oob-read")
        ctx = current()
        if ctx.batch is not None:
            ctx.batch.on_load(self, clipped)
        self.check_initialised(inside)
        if not clipped:
            out = self.data[self._slices(win)].to(self.dtype.container, copy=True)
        else:
            out = ctx.poison(shape, self.dtype, into=f"a read past the edge of {self.name}")
            if all(b > a for a, b in inside):
                out[self._slices(inside, win)] = self.data[self._slices(inside)]
        for client in ctx.fan.load:
            client.on_load(ctx, self, win)
        return out

    def store(self, win: Window, values: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Write container `values` (shape of `win`) where `mask` (default all) is set."""
        batch = current().batch
        if batch is not None:
            batch.on_store(self, win, values, mask)  # applied per block when the stage ends
            return
        inside, clipped = self._clip(win, "oob-write", mask)
        if not all(b > a for a, b in inside):
            return
        src = values[self._slices(inside, win)] if clipped else values
        m = None if mask is None else (mask[self._slices(inside, win)] if clipped else mask)
        sl = self._slices(inside)
        ctx = current()
        scalar = bool(getattr(ctx, "_scalar_store", False))
        for client in ctx.fan.store:  # before the write: the hazard checks read the last writers
            client.on_store(ctx, self, inside, m, scalar)
        site_ids = self.__dict__.get("site_ids")
        if site_ids is None and ctx.observed and self.__dict__.get("_site_ids_lazy"):
            site_ids = self.site_ids = torch.full(self.shape, -1, dtype=torch.int32, device=self.data.device)
        if site_ids is not None and site_ids.shape != self.writer.shape:
            site_ids = None  # a view made without its own site map
        site_id = intern_site(kernel_site()) if site_ids is not None else -1
        ctx.before_write(self.data)
        if m is None:
            self.data[sl] = src
            self.written[sl] = True
            self.writer[sl] = ctx.current.token
            if site_ids is not None:
                site_ids[sl] = site_id
        else:
            self.data[sl] = torch.where(m, src, self.data[sl])
            self.written[sl] |= m
            self.writer[sl] = torch.where(m, torch.full_like(self.writer[sl], ctx.current.token),
                                          self.writer[sl])
            if site_ids is not None:
                site_ids[sl] = torch.where(m, torch.full_like(site_ids[sl], site_id), site_ids[sl])
        for client in ctx.fan.stored:
            client.on_stored(ctx, self, inside, m, scalar)

    def store_element(self, idx: tuple[int, ...], value: int | float) -> bool:
        """Write one in-range element (``pl.write``) with `store`'s written-mask, last-writer
        and race bookkeeping, without tensor temporaries (a scalar loop's hot path). Returns
        False, writing nothing, where `store` must do it (outside the tensor, an observed run or
        a batched stage watching, a store client without a one-element hook, a tensor type
        with its own rules)."""
        ctx = current()
        if (ctx.batch is not None or ctx.observed or not ctx.fan.element_stores or type(self) is not Tensor
                or any(not 0 <= i < n for i, n in zip(idx, self.shape))):
            return False
        token = ctx.current.token
        data, written, writer = self.scalar_views()
        for client in ctx.fan.store:
            client.on_store_element(ctx, self, idx, int(writer[idx]))
        ctx.before_write(self.data)
        data[idx] = value
        written[idx] = True
        writer[idx] = token
        return True

    def scalar_views(self) -> tuple:
        """(data, written-mask, last writers) for one-element reads and writes: on the CPU,
        NumPy views of the same memory (indexing one element is ~20× cheaper than in torch),
        made again whenever the tensors behind them change."""
        data, written, writer = self.data, self.written, self.writer
        if data.device.type != "cpu":
            return data, written, writer
        cached = self.__dict__.get("_scalar_views")
        if cached is None or cached[0] is not data or cached[1] is not written or cached[2] is not writer:
            cached = self.__dict__["_scalar_views"] = (data, written, writer,
                                                       data.numpy(), written.numpy(), writer.numpy())
        return cached[3:]

    def race_world(self) -> object | None:
        """The running multi-rank world that judges races on this tensor (a window of it),
        else None: element races between blocks judge it (`equiv.tile.races`)."""
        return None

    def read_element(self, idx: tuple[int, ...]) -> int | float | None:
        """One in-range element as a Python number (``pl.read``'s hot path), or None where
        `load` must read it (outside the tensor, a batched stage watching, another type)."""
        if (type(self) is not Tensor or current().batch is not None
                or any(not 0 <= i < n for i, n in zip(idx, self.shape))):
            return None
        views = self.scalar_views()
        if self.unset_reads() and not bool(views[1][idx]):
            self.note_unset(idx)
        value = views[0][idx]
        return float(value) if self.dtype.is_float else int(value)
