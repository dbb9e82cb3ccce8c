//! Burn's activation ops on anyaccel's own activations and their gradients (Burn's defaults
//! compose them from float ops; its `gelu_backward` default is the tanh approximation's
//! derivative, while its `gelu` is the exact erf form).

use anyaccel::ops::GeluApproximation;

use burn_backend::ops::ActivationOps;
use burn_backend::tensor::FloatTensor;
use burn_backend::Scalar;

use crate::tensor::{axis, ok, scalar_f64};
use crate::Anyaccel;

impl ActivationOps<Self> for Anyaccel {
    fn relu(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("relu", "relu")
    }

    fn relu_backward(output: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        // relu's output is positive exactly where its input is.
        grad.call(
            "relu_backward",
            "relu_backward",
            &[Some(&grad.t), Some(&output.t)],
            &[],
        )
    }

    fn leaky_relu(tensor: FloatTensor<Self>, negative_slope: Scalar) -> FloatTensor<Self> {
        let slope = scalar_f64(negative_slope);
        tensor.with(ok(
            "leaky_relu",
            anyaccel::ops::leaky_relu(tensor.queue(), &tensor.t, slope),
        ))
    }

    fn gelu(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.with(ok(
            "gelu",
            anyaccel::ops::gelu(tensor.queue(), &tensor.t, GeluApproximation::None),
        ))
    }

    fn gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        x.with(ok(
            "gelu_backward",
            anyaccel::ops::gelu_backward(x.queue(), &grad.t, &x.t, GeluApproximation::None),
        ))
    }

    fn sigmoid(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        tensor.unary("sigmoid", "sigmoid")
    }

    fn softmax(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        tensor.call(
            "softmax",
            "softmax",
            &[Some(&tensor.t)],
            &[("axis", axis(dim))],
        )
    }

    fn log_softmax(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        tensor.call(
            "log_softmax",
            "log_softmax",
            &[Some(&tensor.t)],
            &[("axis", axis(dim))],
        )
    }
}
