// Strided layouts. The layout buffer `L` holds, first, the start of each "space" (one per
// index space a kernel walks), then the spaces: `rank, tensors, shape[rank]`, then for each
// tensor `offset, strides[rank]`, all in elements. `walk$S(lin)` turns the row-major linear
// index `lin` of space $S into the element offset of each of its (up to four) tensors. The op
// layer merges dimensions that are contiguous in every tensor first, so a contiguous walk is a
// single step.
//
// The steps are written out, one per possible dimension (no loop): some drivers bound the
// number of loop iterations an invocation may run (lavapipe stops after 65535), and a walk runs
// once per element.

//# walk
fn walk$S(lin: u32) -> vec4<u32> {
    let s = L[$Su];
    let rank = L[s];
    let sh = s + 2u;
    let tb = sh + rank;
    let w = rank + 1u;
    var o = vec4<u32>($OFFSETS);
    var rem = lin;
$STEPS
    return o;
}

//# walk_step
    if (rank > $Ku) {
        let d = rank - 1u - $Ku;
        let size = L[sh + d];
        let i = rem % size;
        rem = rem / size;
        o = o + i * vec4<u32>($STRIDES);
    }
