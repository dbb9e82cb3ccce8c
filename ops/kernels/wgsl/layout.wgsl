// Strided layouts. The layout words hold, for each "space" (an index space a kernel walks) one
// after the other: `rank, tensors, shape[rank]`, then for each tensor `offset, strides[rank]`,
// all in elements. They are members `p.L0`, `p.L1`, ... of the scalar block where they fit in it
// with the scalars, else the elements of the buffer `L`. `walk$S(lin)` turns the row-major
// linear index `lin` of space $S into the element offset of each of its (up to four) tensors.
//
// The op layer merges the dimensions that are contiguous in every tensor first, and writes the
// walk for the rank that is left, with the places of the words as constants: a contiguous walk
// is one multiply-add, and no walk loops (some drivers bound the loop iterations an invocation
// may run: lavapipe stops after 65535). `lin` must lie inside the space.

//# walk
fn walk$S(lin: u32) -> vec4<u32> {
    var o = vec4<u32>($OFFSETS);
    var rem = lin;
$STEPS
    return o;
}

//# walk_step
    {
        let size = $SIZE;
        let i = rem % size;
        rem = rem / size;
        o = o + i * vec4<u32>($STRIDES);
    }

//# walk_last
    o = o + rem * vec4<u32>($STRIDES);
