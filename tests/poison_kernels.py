"""Small PyPTO-syntax kernels for tests/test_poison_runs.py: each reads uninitialised memory
along one path of the emulator (a window of scratch, one element, an atomic add, a tile's
unread part, a new tile, a read past a tensor) in a way NaN poison cannot show (a comparison
or an integer carries it), and `clean` reads only what it wrote."""

from equiv import tile as pl

R = 4
C = 16


def _half_scratch(x):
    """Scratch whose last column no block writes."""
    s = pl.create_tensor([R, C], pl.FP32)
    for b in pl.spmd(R, name_hint="fill"):
        s[b:b + 1, 0:C - 1] = x[b:b + 1, 0:C - 1]
    return s


def window(x, y, cfg):
    """Each block loads a whole row of the scratch (its last element never written); the
    comparison turns NaN into 0 and a finite pattern into 0 or 1."""
    s = _half_scratch(x)
    for b in pl.spmd(R, name_hint="use"):
        y[b:b + 1, 0:C] = pl.mul(pl.cmp(s[b:b + 1, 0:C], 0.0, "gt"), x[b:b + 1, 0:C])


def window_written(x, y, cfg):
    """The same, reading only the columns written (a correct version)."""
    s = _half_scratch(x)
    for b in pl.spmd(R, name_hint="use"):
        y[b:b + 1, 0:C - 1] = pl.mul(pl.cmp(s[b:b + 1, 0:C - 1], 0.0, "gt"), x[b:b + 1, 0:C - 1])
        y[b:b + 1, C - 1:C] = x[b:b + 1, C - 1:C]


def _int_scratch():
    """Integer scratch with its first column written; integer poison is a pattern in every run."""
    s = pl.create_tensor([R, C], pl.INT32)
    for b in pl.spmd(R, name_hint="fill"):
        pl.write(s, [b, 0], pl.cast(b, pl.INT32))
    return s


def element(x, y, cfg):
    """Each block reads one element of integer scratch that no block wrote (``pl.read``)."""
    s = _int_scratch()
    for b in pl.spmd(R, name_hint="use"):
        pl.write(y, [b, 0], pl.read(s, [b, 1]))


def element_written(x, y, cfg):
    """Each block reads the element it wrote."""
    s = _int_scratch()
    for b in pl.spmd(R, name_hint="use"):
        pl.write(y, [b, 0], pl.read(s, [b, 0]))


def atomic(x, y, cfg):
    """Atomic adds into an integer output nothing initialised: each adds to poison."""
    for b in pl.spmd(R, name_hint="add"):
        pl.assemble(y, pl.cast(pl.full([1, 1], dtype=pl.FP32, value=1.0), target_type=pl.INT32), [b, 0],
                    atomic=pl.AtomicType.Add)


def atomic_zeroed(x, y, cfg):
    """The same adds into an output zeroed first."""
    for z in pl.spmd(1, name_hint="zero"):
        pl.store(pl.cast(pl.full([R, 1], dtype=pl.FP32, value=0.0), target_type=pl.INT32), [0, 0], y)
    for b in pl.spmd(R, name_hint="add"):
        pl.assemble(y, pl.cast(pl.full([1, 1], dtype=pl.FP32, value=1.0), target_type=pl.INT32), [b, 0],
                    atomic=pl.AtomicType.Add)


def padding(x, y, cfg):
    """A [1, C] tile with C/2 valid columns whose valid shape is widened to the whole tile:
    its unread half reaches the store."""
    for b in pl.spmd(R, name_hint="rows"):
        t = pl.load(x, [b, 0], [1, C], valid_shape=[1, C // 2])
        y[b:b + 1, 0:C] = pl.cmp(pl.set_validshape(t, 1, C), 0.0, "gt")


def new_tile(x, y, cfg):
    """A tile from ``pl.create_tile`` stored without being filled."""
    for b in pl.spmd(R, name_hint="rows"):
        t = pl.create_tile([1, C], pl.FP32)
        y[b:b + 1, 0:C] = pl.cmp(t, 0.0, "gt")


def past_the_edge(x, y, cfg):
    """Each block reads two columns past the end of x (an out-of-range read)."""
    for b in pl.spmd(R, name_hint="rows"):
        y[b:b + 1, 0:C] = pl.cmp(x[b:b + 1, 2:C + 2], 0.0, "gt")


def clean(x, y, cfg):
    """Reads only its inputs and scratch it wrote."""
    s = pl.create_tensor([R, C], pl.FP32)
    for b in pl.spmd(R, name_hint="fill"):
        s[b:b + 1, 0:C] = pl.mul(x[b:b + 1, 0:C], 2.0)
    for b in pl.spmd(R, name_hint="use"):
        y[b:b + 1, 0:C] = pl.add(s[b:b + 1, 0:C], x[b:b + 1, 0:C])


def clean_half(x, y, cfg):
    """Clean, but leaves the last column of y unwritten (unwritten, not uninitialised)."""
    for b in pl.spmd(R, name_hint="rows"):
        y[b:b + 1, 0:C - 1] = pl.mul(x[b:b + 1, 0:C - 1], 3.0)
