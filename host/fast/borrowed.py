"""The engine struct's arrays, read in compiled code without reference counting.

numba counts references to every array a compiled function holds: reading a
field of a structref (`E.pool_leaves`) increments the array's reference count
and a decrement follows when the value dies, each an out-of-line call and an
atomic read-modify-write.  numba's pruning pass removes the pairs that sit in
one basic block, but the hot loop's field reads span loops and branches, and
the pairs left over cost about a quarter of the time per message.

The struct already owns a reference to each of its arrays for as long as it
lives, and compiled code only uses the arrays while it holds the struct.  So
a field read here yields a `BorrowedArray`: the same layout and operations as
`types.Array` (it is a subclass), but with a data model that carries no
reference-counted member, so numba emits no reference counting for it nor
for the views taken from it (`E.lv_price[sym, side]`).  A borrowed array is
never returned to Python or stored; converting one to a plain array (which
numba does only where a plain array is required) takes a counted reference
in the ordinary way.

`register_struct` replaces `numba.experimental.structref.register` for the
engine type: the same data model, constructor and destructor (which keep
counting the references the struct owns), with field reads typed as above.

The struct itself is counted in the same way whenever a compiled function
receives it as an argument or copies it into an inlined helper.  Each entry
point called from Python therefore starts with `E = borrow(engine)`: a
`BorrowedStruct` with the same fields and layout and no counted member, valid
while the entry point runs, since its caller holds `engine` until it returns.
The input buffer, passed on to every handler, is borrowed the same way.
"""

from __future__ import annotations

from numba.core import cgutils, types
from numba.core.datamodel import default_manager, models
from numba.core.extending import (
    infer_getattr,
    intrinsic,
    lower_cast,
    lower_getattr_generic,
    lower_setattr_generic,
    register_model,
)
from numba.core.typing.templates import AttributeTemplate
from numba.experimental.structref import _Utils


class BorrowedArray(types.Array):
    """An array whose reference is held by something that outlives its use."""

    def __init__(self, dtype, ndim, layout, readonly=False, aligned=True):
        name = f"borrowed array({dtype}, {ndim}d, {layout}{', readonly' if readonly else ''})"
        super().__init__(dtype, ndim, layout, readonly=readonly, name=name, aligned=aligned)

    def copy(self, dtype=None, ndim=None, layout=None, readonly=None):
        """Views of a borrowed array are borrowed too (numba types views with copy)."""
        return BorrowedArray(self.dtype if dtype is None else dtype,
                             self.ndim if ndim is None else ndim,
                             self.layout if layout is None else layout,
                             (not self.mutable) if readonly is None else readonly,
                             self.aligned)

    def unify(self, typingctx, other):
        if isinstance(other, BorrowedArray):
            plain = super().unify(typingctx, other)
            if plain is not None:
                return BorrowedArray(plain.dtype, plain.ndim, plain.layout,
                                     not plain.mutable, plain.aligned)
        return super().unify(typingctx, other)


@register_model(BorrowedArray)
class BorrowedArrayModel(models.StructModel):
    """numba's ArrayModel with the meminfo member as a plain pointer: the same LLVM
    type, no reference counting."""

    def __init__(self, dmm, fe_type):
        members = [
            ("meminfo", types.voidptr),
            ("parent", types.voidptr),
            ("nitems", types.intp),
            ("itemsize", types.intp),
            ("data", types.CPointer(fe_type.dtype)),
            ("shape", types.UniTuple(types.intp, fe_type.ndim)),
            ("strides", types.UniTuple(types.intp, fe_type.ndim)),
        ]
        super().__init__(dmm, fe_type, members)


def borrowed(typ):
    if isinstance(typ, types.Array) and not isinstance(typ, BorrowedArray):
        return BorrowedArray(typ.dtype, typ.ndim, typ.layout, not typ.mutable, typ.aligned)
    return typ


@lower_cast(BorrowedArray, BorrowedArray)
@lower_cast(BorrowedArray, types.Array)
@lower_cast(types.Array, BorrowedArray)
def _same_layout(context, builder, fromty, toty, val):
    if fromty.layout != toty.layout and toty.layout != "A":
        raise NotImplementedError(f"cast {fromty} to {toty}")
    return val


class BorrowedStruct(types.StructRef):
    """A structref whose reference is held by the caller for as long as it is used."""


@register_model(BorrowedStruct)
class BorrowedStructModel(models.StructModel):
    """numba's StructRefModel with the meminfo as a plain pointer."""

    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, [("meminfo", types.voidptr)])


@intrinsic
def borrow(typingctx, struct):
    """The struct without reference counting, for the rest of a call whose caller
    holds it (see the module docstring); an array likewise.  What is borrowed
    already is returned as it is."""
    if isinstance(struct, (BorrowedStruct, BorrowedArray)):
        return struct(struct), lambda context, builder, sig, args: args[0]
    if isinstance(struct, types.Array):
        return borrowed(struct)(struct), lambda context, builder, sig, args: args[0]
    if not isinstance(struct, types.StructRef):
        return None

    def codegen(context, builder, sig, args):
        held = cgutils.create_struct_proxy(sig.args[0])(context, builder, value=args[0])
        out = cgutils.create_struct_proxy(sig.return_type)(context, builder)
        out.meminfo = held.meminfo
        return out._getvalue()
    return BorrowedStruct(list(struct.field_dict.items()))(struct), codegen


def _field_reads(struct_type):
    """Field reads typed and lowered with borrowed arrays."""
    @infer_getattr
    class StructAttribute(AttributeTemplate):
        key = struct_type

        def generic_resolve(self, typ, attr):
            if attr in typ.field_dict:
                return borrowed(typ.field_dict[attr])

    @lower_getattr_generic(struct_type)
    def struct_getattr(context, builder, typ, val, attr):
        return getattr(_Utils(context, builder, typ).get_data_struct(val), attr)


_field_reads(BorrowedStruct)


def register_struct(struct_type):
    """structref.register with borrowed array fields (see the module docstring)."""
    default_manager.register(struct_type, models.StructRefModel)
    _field_reads(struct_type)

    @lower_setattr_generic(struct_type)
    def struct_setattr(context, builder, sig, args, attr):
        inst_type, val_type = sig.args
        instance, val = args
        data = _Utils(context, builder, inst_type).get_data_struct(instance)
        field_type = inst_type.field_dict[attr]
        # the struct owns a counted reference to what it holds (the destructor drops it)
        new = context.cast(builder, val, val_type, field_type)
        old = getattr(data, attr)
        context.nrt.incref(builder, field_type, new)
        context.nrt.decref(builder, field_type, old)
        setattr(data, attr, new)

    return struct_type
