// Element access per storage kind. `$NAME` is the tensor's binding; element `i` counts from the
// start of the binding. Kinds stored in parts of 32-bit words (u8, i8, bool, bf16 and raw 2-byte
// elements) read by extracting bits. They are not written in place (neighbouring elements of
// one word would race): stores go to a staging word per element, `$NAME[i]`, tagged with bit
// 31, and the `pack` kernel then merges the tagged values into the output's words.

//# load_f32
fn ld_$NAME(i: u32) -> f32 { return $NAME[i]; }
//# store_f32
fn st_$NAME(i: u32, v: f32) { $NAME[i] = v; }

//# load_i32
fn ld_$NAME(i: u32) -> i32 { return $NAME[i]; }
//# store_i32
fn st_$NAME(i: u32, v: i32) { $NAME[i] = v; }

//# load_i64
fn ld_$NAME(i: u32) -> i64 { return $NAME[i]; }
//# store_i64
fn st_$NAME(i: u32, v: i64) { $NAME[i] = v; }

//# load_f64
fn ld_$NAME(i: u32) -> f64 { return $NAME[i]; }
//# store_f64
fn st_$NAME(i: u32, v: f64) { $NAME[i] = v; }

//# load_f16
fn ld_$NAME(i: u32) -> f32 { return f32($NAME[i]); }
//# store_f16
fn st_$NAME(i: u32, v: f32) { $NAME[i] = f16_from_f32(v); }

//# load_bf16
fn ld_$NAME(i: u32) -> f32 { return bf16_to_f32(half_of($NAME[i >> 1u], i)); }
//# store_bf16
fn st_$NAME(i: u32, v: f32) { $NAME[i] = bf16_from_f32(v) | 0x80000000u; }

//# load_u8
fn ld_$NAME(i: u32) -> u32 { return byte_of($NAME[i >> 2u], i); }
//# store_u8
fn st_$NAME(i: u32, v: u32) { $NAME[i] = (v & 0xffu) | 0x80000000u; }

//# load_i8
fn ld_$NAME(i: u32) -> i32 { return bitcast<i32>(byte_of($NAME[i >> 2u], i) << 24u) >> 24u; }
//# store_i8
fn st_$NAME(i: u32, v: i32) { $NAME[i] = (bitcast<u32>(v) & 0xffu) | 0x80000000u; }

//# load_bool
fn ld_$NAME(i: u32) -> bool { return byte_of($NAME[i >> 2u], i) != 0u; }
//# store_bool
fn st_$NAME(i: u32, v: bool) { $NAME[i] = select(0x80000000u, 0x80000001u, v); }

//# load_raw2
fn ld_$NAME(i: u32) -> u32 { return half_of($NAME[i >> 1u], i); }
//# store_raw2
fn st_$NAME(i: u32, v: u32) { $NAME[i] = (v & 0xffffu) | 0x80000000u; }

//# load_raw4
fn ld_$NAME(i: u32) -> u32 { return $NAME[i]; }
//# store_raw4
fn st_$NAME(i: u32, v: u32) { $NAME[i] = v; }

//# load_raw8
fn ld_$NAME(i: u32) -> vec2<u32> { return vec2<u32>($NAME[2u * i], $NAME[2u * i + 1u]); }
//# store_raw8
fn st_$NAME(i: u32, v: vec2<u32>) { $NAME[2u * i] = v.x; $NAME[2u * i + 1u] = v.y; }

//# pack
// One invocation per 32-bit word of the output's window: the staged elements of the word
// (tagged with bit 31) replace their lanes; other bytes keep their value.
@compute @workgroup_size(256)
fn pack(@builtin(global_invocation_id) gid: vec3<u32>) {
    let w = gid.x;
    if (w >= p.words) { return; }
    var word = out[w];
    for (var lane = 0u; lane < $LANES; lane++) {
        let t = staged[w * $LANES + lane];
        if ((t & 0x80000000u) != 0u) {
            let sh = lane * (32u / $LANES);
            word = (word & ~($MASK << sh)) | ((t & $MASK) << sh);
        }
    }
    out[w] = word;
}
