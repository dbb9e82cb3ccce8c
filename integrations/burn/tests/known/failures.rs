//! The differential cases that do not match burn-flex, each with its reason. The suite fails
//! on a listed case that passes, so this list stays true; the goal is an empty one. Every entry
//! is an op that anyaccel's op set does not have yet: the backend refuses it with a message
//! naming the op (never a wrong value).

/// (case name, reason) for the device `id`: the same on every device today.
pub fn failures(id: &str) -> Vec<(&'static str, &'static str)> {
    let _ = id;
    vec![
        ("conv3d", "the op set convolves in 1-D and 2-D"),
        ("deform_conv2d+deform_conv2d_backward", "the op set has no deformable convolution"),
        (
            "conv3d_x_backward+conv3d_weight_backward+conv3d_bias_backward",
            "the op set convolves in 1-D and 2-D (Burn's conv3d gradient is a 3-D transposed conv)",
        ),
        (
            "conv_transpose3d+conv_transpose3d_x_backward+conv_transpose3d_weight_backward+conv_transpose3d_bias_backward",
            "the op set's transposed convolutions are 1-D and 2-D",
        ),
        (
            "conv2d (f16)",
            "burn-flex accumulates f16 convolutions in f16 (about 1% off); anyaccel gives the f32 \
             sum rounded once (half_conv_is_the_rounded_f32_conv checks it)",
        ),
    ]
}
