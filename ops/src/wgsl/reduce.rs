//! Reductions over axes (`sum`, `mean`, `max`, `min`, `argmax`, `argmin`), `cumsum` and
//! `topk`: one work group per output row, accumulating in f32 for floats and wrapping in the
//! dtype for integers.

use anyaccel_hal::{DType, Error, OpCall, Result, TensorDesc};

use super::{
    attrs, bind, bind_desc, count32, input, output, section, Access, Bound, Cx, Shader, Space,
};
use crate::catalog::misrouted;
use crate::plan::reduce_axes;

pub(super) static REDUCE: &str = include_str!("../../kernels/wgsl/reduce.wgsl");

/// The type that values of a dtype are compared in, and its zero.
fn acc_of(dtype: DType) -> (&'static str, &'static str) {
    match dtype {
        DType::I32 | DType::I8 => ("i32", "0"),
        DType::I64 => ("i64", "0li"),
        DType::U8 => ("u32", "0u"),
        DType::Bool => ("bool", "false"),
        _ => ("f32", "0.0"),
    }
}

/// The type that sums of a dtype accumulate in, and the conversion of a sum to the value the
/// output stores.
fn sum_of<'a>(cx: &Cx<'_>, dtype: DType) -> (&'a str, &'a str) {
    match dtype {
        DType::I32 => ("i32", "i32"),
        DType::I64 => ("i64", "i64"),
        _ => (cx.wide(), "f32"),
    }
}

/// The order helpers of argmax, argmin and topk for a dtype.
fn order_section(dtype: DType) -> Result<String> {
    Ok(if dtype.is_int() {
        section(REDUCE, "int_order")?.replace("$T", acc_of(dtype).0)
    } else {
        section(REDUCE, "float_order")?.to_string()
    })
}

/// The identity of a running maximum (`max`) or minimum of `dt` (its lowest or highest value)
/// and the function that combines two (for floats, a NaN wins): for `max`/`min` and
/// `cummax`/`cummin`.
fn extreme_of(dt: DType, max: bool) -> (&'static str, &'static str) {
    match (dt, max) {
        (DType::I32, true) => ("(-2147483647 - 1)", "max"),
        (DType::I32, false) => ("2147483647", "min"),
        (DType::I64, true) => ("i64_min()", "max"),
        (DType::I64, false) => ("i64_max()", "min"),
        (_, true) => ("-inf_f32()", "f_max"),
        (_, false) => ("inf_f32()", "f_min"),
    }
}

/// Runs one reduction-family op.
pub(crate) fn launch(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    match call.op.as_str() {
        "cumsum" | "cumprod" | "cummax" | "cummin" => cumsum(cx, call),
        "topk" | "sort" | "argsort" => topk(cx, call),
        "sum" | "mean" | "max" | "min" | "argmax" | "argmin" | "prod" | "any" | "all"
        | "logsumexp" | "var" | "std" => reduce(cx, call),
        other => Err(misrouted(other)),
    }
}

/// Elements of a row that one work group reduces: rows longer than this are reduced in chunks
/// whose partial results a second launch merges. (It keeps each invocation's loop short: some
/// drivers stop a loop after 65535 iterations per invocation.)
const REDUCE_CHUNK: usize = 1 << 20;

fn reduce(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let x_t = input(call, 0)?;
    let out_t = output(call, 0)?;
    let dt = x_t.dtype();
    let axes = reduce_axes(&a, x_t.rank())?;
    let keep = a.flag("keepdim", false)?;
    let (x, out) = (bind(x_t)?, bind(out_t)?);

    let (mut kept_shape, mut kept_x, mut kept_out) = (vec![], vec![], vec![]);
    let (mut red_shape, mut red_x) = (vec![], vec![]);
    let mut k = 0;
    for d in 0..x.desc.rank() {
        if axes.contains(&d) {
            red_shape.push(x.desc.shape[d]);
            red_x.push(x.desc.strides[d]);
            if keep {
                k += 1;
            }
        } else {
            kept_shape.push(x.desc.shape[d]);
            kept_x.push(x.desc.strides[d]);
            kept_out.push(out.desc.strides[k]);
            k += 1;
        }
    }
    let count: usize = red_shape.iter().product();
    let rows = count32(op, "the output", out.desc.numel())?;
    let (x_ty, zero) = acc_of(dt);
    let float = dt.is_float();
    let (sum_acc, sum_out) = sum_of(cx, dt);
    let sums = matches!(op, "sum" | "mean") || (op == "prod" && !float);
    let wide = cx.wide();
    let var_acc = format!("vec4<{wide}>");
    let acc = match op {
        _ if sums => sum_acc,
        "any" | "all" => "u32",
        "logsumexp" | "prod" => "vec2<f32>",
        "var" | "std" => var_acc.as_str(),
        _ => x_ty,
    };
    let nonzero = match dt {
        DType::Bool => "x",
        DType::U8 => "x != 0u",
        DType::I32 | DType::I8 => "x != 0",
        DType::I64 => "x != 0li",
        _ => "!is_zero(x)",
    };
    let (init, push, merge, fin): (String, String, &str, String) = match op {
        "prod" if float => (
            "vec2<f32>(1.0, 0.0)".to_string(),
            "return Acc(prod_merge(a.v, prod_one(x)), NONE);".to_string(),
            "return Acc(prod_merge(a.v, b.v), NONE);",
            "prod_final(r.v)".to_string(),
        ),
        "prod" => (
            if dt == DType::I64 { "1li" } else { "1" }.to_string(),
            format!("return Acc(a.v * {acc}(x), NONE);"),
            "return Acc(a.v * b.v, NONE);",
            format!("{sum_out}(r.v)"),
        ),
        "any" => (
            "0u".to_string(),
            format!("return Acc(a.v | select(0u, 1u, {nonzero}), NONE);"),
            "return Acc(a.v | b.v, NONE);",
            "r.v != 0u".to_string(),
        ),
        "all" => (
            "1u".to_string(),
            format!("return Acc(a.v & select(0u, 1u, {nonzero}), NONE);"),
            "return Acc(a.v & b.v, NONE);",
            "r.v != 0u".to_string(),
        ),
        "logsumexp" => (
            "vec2<f32>(-inf_f32(), 0.0)".to_string(),
            "return Acc(lse_merge(a.v, vec2<f32>(x, 1.0)), NONE);".to_string(),
            "return Acc(lse_merge(a.v, b.v), NONE);",
            "lse_final(r.v)".to_string(),
        ),
        "var" | "std" => (
            format!("vec4<{wide}>(0.0)"),
            format!("return Acc(var_merge(a.v, vec4<{wide}>(1.0, {wide}(x), 0.0, 0.0)), NONE);"),
            "return Acc(var_merge(a.v, b.v), NONE);",
            format!("{op}_final(r.v)"),
        ),
        "sum" | "mean" => (
            zero.to_string(),
            format!("return Acc(a.v + {acc}(x), NONE);"),
            "return Acc(a.v + b.v, NONE);",
            if op == "mean" {
                format!("f32(r.v / {acc}(p.count))")
            } else {
                format!("{sum_out}(r.v)")
            },
        ),
        "max" | "min" => {
            let (init, f) = extreme_of(dt, op == "max");
            (
                init.to_string(),
                format!("return Acc({f}(a.v, x), NONE);"),
                if f.len() == 3 {
                    if f == "max" {
                        "return Acc(max(a.v, b.v), NONE);"
                    } else {
                        "return Acc(min(a.v, b.v), NONE);"
                    }
                } else if f == "f_max" {
                    "return Acc(f_max(a.v, b.v), NONE);"
                } else {
                    "return Acc(f_min(a.v, b.v), NONE);"
                },
                "r.v".to_string(),
            )
        }
        _ => {
            let key = if op == "argmax" { "key_gt" } else { "key_lt" };
            (
                zero.to_string(),
                format!("if (a.i == NONE || {key}(x, a.v)) {{ return Acc(x, j); }}\n    return a;"),
                if op == "argmax" {
                    "if (b.i != NONE && (a.i == NONE || key_gt(b.v, a.v) || (key_same(a.v, b.v) && b.i < a.i))) { return b; }\n    return a;"
                } else {
                    "if (b.i != NONE && (a.i == NONE || key_lt(b.v, a.v) || (key_same(a.v, b.v) && b.i < a.i))) { return b; }\n    return a;"
                },
                "(i64(r.i) & 0xffffffffli)".to_string(),
            )
        }
    };
    let chunks = count.div_ceil(REDUCE_CHUNK).max(1);
    let groups = count32(op, "the work groups", rows as usize * chunks)?;
    let common = section(REDUCE, "reduce_common")?
        .replace("$ACC", acc)
        .replace("$X", x_ty)
        .replace("$PUSH", &push)
        .replace("$MERGE", merge);
    let part = if chunks > 1 {
        // The stride of `array<Acc>`: the value, a u32, aligned to the value's alignment.
        let size = match acc {
            "vec4<f64>" => 64,
            "vec4<f32>" => 32,
            "f64" | "i64" | "vec2<f32>" => 16,
            _ => 8,
        };
        Some(cx.device.alloc(groups as usize * size)?)
    } else {
        None
    };
    let setup = |sh: &mut Shader<'_>, x_arg: bool| -> Result<()> {
        if x_arg {
            sh.tensor("x", &x, Access::of(dt), false)?;
        }
        sh.tensor("out", &out, Access::of(out_t.dtype()), true)?;
        sh.space(
            Space::new(&kept_shape)
                .with(x.desc.offset, kept_x.clone())
                .with(out.desc.offset, kept_out.clone()),
        );
        sh.space(Space::new(&red_shape).with(0, red_x.clone()));
        sh.size("count", count)?;
        sh.size("chunk", REDUCE_CHUNK.min(count.max(1)))?;
        sh.size("chunks", chunks)?;
        sh.need(dt)?;
        if op.starts_with("arg") {
            sh.need(DType::I64)?;
            sh.body(&order_section(dt)?);
        }
        if acc == "f64" {
            sh.need(DType::F64)?;
        }
        match op {
            "logsumexp" => {
                sh.body(section(REDUCE, "logsumexp")?);
            }
            "var" | "std" => {
                // max(N - correction, 0).
                let correction = a.int_opt("correction")?.unwrap_or(1);
                sh.f32(
                    "divisor",
                    (count as f64 - correction as f64).max(0.0) as f32,
                );
                sh.body(&section(REDUCE, "var")?.replace("$W", wide));
                if wide == "f64" {
                    sh.need(DType::F64)?;
                }
            }
            "prod" if float => {
                sh.body(section(REDUCE, "prod")?);
            }
            _ => {}
        }
        sh.body(&common);
        Ok(())
    };
    let mut sh = Shader::new(cx, op, "reduce");
    setup(&mut sh, true)?;
    let store = if let Some(part) = &part {
        sh.words("part", part.whole(), "Acc", true);
        "part[wid.x] = r;".to_string()
    } else {
        format!("st_out(ob[1], {fin});")
    };
    sh.body(
        &section(REDUCE, "reduce")?
            .replace("$INIT", &init)
            .replace("$STORE", &store),
    );
    sh.launch([groups as u64 * 256, 1, 1])?;
    if let Some(part) = &part {
        let mut sh = Shader::new(cx, op, "reduce_finish");
        setup(&mut sh, false)?;
        sh.words("part", part.whole(), "Acc", false);
        sh.body(
            &section(REDUCE, "reduce_finish")?
                .replace("$INIT", &init)
                .replace("$FINAL", &fin),
        );
        sh.launch([rows as u64 * 256, 1, 1])?;
    }
    Ok(())
}

/// The shape of the lines along `axis` (axis removed) and the strides of a layout over it.
fn line_space(shape: &[usize], strides: &[usize], axis: usize) -> (Vec<usize>, Vec<usize>) {
    let mut s = shape.to_vec();
    let mut st = strides.to_vec();
    s.remove(axis);
    st.remove(axis);
    (s, st)
}

/// Elements of a line that one work group scans.
const CUMSUM_BLOCK: usize = 1 << 18;

fn cumsum(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let x_t = input(call, 0)?;
    let dt = x_t.dtype();
    let axis = a.axis("axis", None, x_t.rank())?;
    let (x, out) = (bind(x_t)?, bind(output(call, 0)?)?);
    let (lines, xs) = line_space(&x.desc.shape, &x.desc.strides, axis);
    let (_, os) = line_space(&out.desc.shape, &out.desc.strides, axis);
    let len = x.desc.shape[axis];
    let block = len.clamp(1, CUMSUM_BLOCK);
    let blocks = len.div_ceil(block).max(1);
    let groups = count32(
        op,
        "the work groups",
        lines.iter().product::<usize>() * blocks,
    )?;
    let (x_ty, zero) = acc_of(dt);
    let (sum_acc, sum_out) = sum_of(cx, dt);
    let prod = op == "cumprod";
    let float_prod = prod && dt.is_float();
    let extreme = matches!(op, "cummax" | "cummin");
    // The scan's type, its identity, combination, element and stored value.
    let (acc, zero, add, of, out_conv) = if extreme {
        let (ident, f) = extreme_of(dt, op == "cummax");
        (x_ty, ident, format!("{f}(a, b)"), "x", sum_out)
    } else if float_prod {
        (
            "vec2<f32>",
            "vec2<f32>(1.0, 0.0)",
            "prod_merge(a, b)".to_string(),
            "prod_one(x)",
            "prod_final",
        )
    } else if prod {
        let one = if dt == DType::I64 { "1li" } else { "1" };
        (sum_acc, one, "a * b".to_string(), "x", sum_out)
    } else {
        let of = if dt.is_float() { "$ACC(x)" } else { "x" };
        (sum_acc, zero, "a + b".to_string(), of, sum_out)
    };
    let size = if matches!(acc, "f64" | "i64" | "vec2<f32>") {
        8
    } else {
        4
    };
    let totals = cx.device.alloc(groups as usize * size)?;
    let flag = |name: &str| -> Result<&'static str> {
        Ok(if a.flag(name, false)? {
            "true"
        } else {
            "false"
        })
    };
    let excl = if extreme { "false" } else { flag("exclusive")? };
    let rev = flag("reverse")?;
    let common = section(REDUCE, "cumsum_common")?
        .replace("$ADD", &add)
        .replace("$OF", of)
        .replace("$REV", rev)
        .replace("$ACC", acc)
        .replace("$X", x_ty)
        .replace("$ZERO", zero);
    let setup = |sh: &mut Shader<'_>, with_out: bool| -> Result<()> {
        sh.tensor("x", &x, Access::of(dt), false)?;
        let mut space = Space::new(&lines).with(x.desc.offset, xs.clone());
        if with_out {
            sh.tensor("out", &out, Access::of(dt), true)?;
            space = space.with(out.desc.offset, os.clone());
        }
        sh.space(space);
        sh.size("len", len)?;
        sh.size("block", block)?;
        sh.size("blocks", blocks)?;
        sh.size("xs", x.desc.strides[axis])?;
        sh.size("os", out.desc.strides[axis])?;
        if acc == "f64" {
            sh.need(DType::F64)?;
        }
        if float_prod {
            sh.body(section(REDUCE, "prod")?);
        }
        sh.body(&common);
        Ok(())
    };
    if blocks > 1 {
        let mut sh = Shader::new(cx, op, "cumsum_totals");
        setup(&mut sh, false)?;
        sh.words("totals", totals.whole(), acc, true);
        sh.body(
            &section(REDUCE, "cumsum_totals")?
                .replace("$ACC", acc)
                .replace("$ZERO", zero),
        );
        sh.launch([groups as u64 * 256, 1, 1])?;
    }
    let mut sh = Shader::new(cx, op, "cumsum");
    setup(&mut sh, true)?;
    sh.words("totals", totals.whole(), acc, false);
    sh.body(
        &section(REDUCE, "cumsum")?
            .replace("$ACC", acc)
            .replace("$OUT", out_conv)
            .replace("$EXCL", excl)
            .replace("$ZERO", zero),
    );
    sh.launch([groups as u64 * 256, 1, 1])
}

/// topk selects with k passes over each line when that stays short (k passes of at most this
/// many loop iterations per invocation in all), and sorts the lines otherwise.
const TOPK_SELECT_STEPS: usize = 2048;

/// The most bytes a tensor's binding covers at once: Vulkan guarantees at least this
/// `maxStorageBufferRange` (lavapipe's is exactly it). sort and argsort split their lines into
/// runs whose bindings stay within it (their i64 indices of 2^24 elements are 128 MiB).
const BIND_LIMIT: usize = 1 << 27;

/// The bytes from a layout's first element to its last.
fn extent_bytes(d: &TensorDesc) -> usize {
    if d.numel() == 0 {
        return 0;
    }
    let span: usize = d
        .shape
        .iter()
        .zip(&d.strides)
        .map(|(n, s)| (n - 1) * s)
        .sum();
    (span + 1) * d.dtype.size_in_bytes()
}

/// `d` narrowed to `range` of dimension `dim`.
fn narrow(d: &TensorDesc, dim: usize, range: std::ops::Range<usize>) -> TensorDesc {
    let mut shape = d.shape.clone();
    shape[dim] = range.len();
    TensorDesc {
        offset: d.offset + range.start * d.strides[dim],
        shape,
        ..d.clone()
    }
}

fn topk(cx: &Cx<'_>, call: &OpCall) -> Result<()> {
    let op = call.op.as_str();
    let a = attrs(call)?;
    let x_t = input(call, 0)?;
    let dt = x_t.dtype();
    let axis = a.axis("axis", Some(-1), x_t.rank())?;
    // sort and argsort: topk of the whole axis (argsort's values go to a scratch buffer).
    let (k, largest) = if op == "topk" {
        (
            usize::try_from(a.int("k")?).unwrap_or(0),
            a.flag("largest", true)?,
        )
    } else {
        (x_t.shape()[axis], a.flag("descending", false)?)
    };
    if matches!(dt, DType::Bool | DType::U8 | DType::I8) {
        return Err(Error::internal(format!(
            "topk: dtype {dt} passed validation"
        )));
    }
    let scratch;
    let (values_t, indices_t) = if op == "argsort" {
        let desc = TensorDesc::contiguous(dt, x_t.shape());
        let bytes = desc.required_bytes()?;
        scratch = anyaccel_hal::Tensor::new(cx.device.alloc(bytes.max(4))?.whole(), desc)?;
        (&scratch, output(call, 0)?)
    } else {
        (output(call, 0)?, output(call, 1)?)
    };
    let tensors = [x_t, values_t, indices_t];
    let too_big = |descs: &[TensorDesc]| descs.iter().any(|d| extent_bytes(d) > BIND_LIMIT);
    let full: Vec<TensorDesc> = tensors.iter().map(|t| t.desc().clone()).collect();
    // Split the outermost other dimension into runs of lines whose bindings fit.
    let split = (0..x_t.rank()).find(|&d| d != axis && x_t.shape()[d] > 1);
    let (dim, run) = match split {
        Some(dim) if too_big(&full) => {
            let n = x_t.shape()[dim];
            let mut run = n;
            while run > 1
                && too_big(
                    &full
                        .iter()
                        .map(|d| narrow(d, dim, 0..run))
                        .collect::<Vec<_>>(),
                )
            {
                run = run.div_ceil(2);
            }
            (dim, run)
        }
        _ => return topk_lines(cx, op, dt, axis, k, largest, tensors.map(bind)),
    };
    let n = x_t.shape()[dim];
    let mut start = 0;
    while start < n {
        let range = start..(start + run).min(n);
        let mut bound = Vec::with_capacity(3);
        for (t, d) in tensors.iter().zip(&full) {
            bound.push(bind_desc(t, narrow(d, dim, range.clone()))?);
        }
        let [x, v, i]: [Bound; 3] = bound
            .try_into()
            .map_err(|_| Error::internal("topk: three bindings expected"))?;
        topk_lines(cx, op, dt, axis, k, largest, [Ok(x), Ok(v), Ok(i)])?;
        start = range.end;
    }
    Ok(())
}

/// topk over the lines of bound x, values and indices.
fn topk_lines(
    cx: &Cx<'_>,
    op: &str,
    dt: DType,
    axis: usize,
    k: usize,
    largest: bool,
    bound: [Result<Bound>; 3],
) -> Result<()> {
    let [x, values, indices] = bound;
    let (x, values, indices) = (x?, values?, indices?);
    let (lines, xs) = line_space(&x.desc.shape, &x.desc.strides, axis);
    let (_, vs) = line_space(&values.desc.shape, &values.desc.strides, axis);
    let (_, is) = line_space(&indices.desc.shape, &indices.desc.strides, axis);
    let rows: usize = lines.iter().product();
    let len = x.desc.shape[axis];
    let (acc, zero) = acc_of(dt);
    // Largest first: a comes before b when it is greater; smallest first: when b is greater
    // (so NaN, above every number, comes last).
    let first = if largest {
        "key_gt(a, b)"
    } else {
        "key_gt(b, a)"
    };
    let common = format!(
        "{}{}",
        order_section(dt)?,
        section(REDUCE, "topk_common")?
            .replace("$ACC", acc)
            .replace("$FIRST(a, b)", first)
    );
    let outputs = |sh: &mut Shader<'_>| -> Result<()> {
        sh.tensor("values", &values, Access::of(dt), true)?;
        sh.tensor("indices", &indices, Access::I64, true)?;
        sh.size("k", k)?;
        sh.size("len", len)?;
        sh.size("vs", values.desc.strides[axis])?;
        sh.size("is", indices.desc.strides[axis])?;
        sh.need(DType::I64)
    };
    // sort and argsort always sort: selection takes a work group per line, slow for many lines.
    if op == "topk" && k * (len.div_ceil(4096) + 9) <= TOPK_SELECT_STEPS {
        let groups = count32(op, "the lines", rows)?;
        let mut sh = Shader::new(cx, op, "topk");
        sh.tensor("x", &x, Access::of(dt), false)?;
        outputs(&mut sh)?;
        sh.space(
            Space::new(&lines)
                .with(x.desc.offset, xs)
                .with(values.desc.offset, vs)
                .with(indices.desc.offset, is),
        );
        sh.size("xs", x.desc.strides[axis])?;
        sh.body(&common);
        sh.body(
            &section(REDUCE, "topk")?
                .replace("$ACC", acc)
                .replace("$ZERO", zero),
        );
        return sh.launch([groups as u64 * 256, 1, 1]);
    }

    // Sort each line, padded to a power of two, with a bitonic network.
    let pad = len.next_power_of_two();
    let total = count32(op, "the padded lines", rows * pad)?;
    let key_size = if acc == "i64" { 8 } else { 4 };
    let keys = cx.device.alloc(total as usize * key_size)?;
    let idx = cx.device.alloc(total as usize * 4)?;
    let sort_shader = |entry: &'static str, write: bool| -> Result<Shader<'_>> {
        let mut sh = Shader::new(cx, op, entry);
        sh.words("keys", keys.whole(), acc, write);
        sh.words("idx", idx.whole(), "u32", write);
        sh.u32("total", total);
        sh.size("pad", pad)?;
        sh.need(dt)?;
        sh.body(&common);
        Ok(sh)
    };
    let mut sh = sort_shader("sort_init", true)?;
    sh.tensor("x", &x, Access::of(dt), false)?;
    sh.space(Space::new(&lines).with(x.desc.offset, xs));
    sh.size("len", len)?;
    sh.size("xs", x.desc.strides[axis])?;
    sh.body(&section(REDUCE, "sort_init")?.replace("$ZERO", zero));
    sh.launch([total as u64, 1, 1])?;
    let mut run = 2;
    while run <= pad {
        let mut step = run / 2;
        while step >= 1 {
            let mut sh = sort_shader("sort_step", true)?;
            sh.size("k", run)?;
            sh.size("j", step)?;
            sh.body(section(REDUCE, "sort_step")?);
            sh.launch([total as u64, 1, 1])?;
            step /= 2;
        }
        run *= 2;
    }
    let n = count32(op, "the outputs", rows * k)?;
    let mut sh = sort_shader("sort_out", false)?;
    outputs(&mut sh)?;
    sh.space(
        Space::new(&lines)
            .with(values.desc.offset, vs)
            .with(indices.desc.offset, is),
    );
    sh.u32("n", n);
    sh.body(section(REDUCE, "sort_out")?);
    sh.launch([n as u64, 1, 1])
}
