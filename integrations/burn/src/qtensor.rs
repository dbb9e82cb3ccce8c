//! Burn's quantized tensors: not supported yet. anyaccel's quantized ops (docs/ops.md 8.17)
//! have their own per-group layout; Burn's schemes (per-tensor and block, packed stores) are
//! not mapped onto them, so every quantized op fails naming itself.

use burn_backend::ops::QTensorOps;
use burn_backend::quantization::{QuantScheme, QuantizationParametersPrimitive};
use burn_backend::tensor::{Device, FloatTensor, QuantizedTensor};
use burn_backend::{DType, ExecutionError, Shape, TensorData, TensorMetadata};
use burn_std::FloatDType;

use crate::tensor::{unsupported, AnyaccelTensor};
use crate::{Anyaccel, AnyaccelDevice};

const WHY: &str = "Burn's quantization schemes are not mapped onto anyaccel's quantized ops yet";

/// A quantized tensor (never made: every op that would make one fails).
#[derive(Clone, Debug)]
pub struct AnyaccelQTensor {
    values: AnyaccelTensor,
    scheme: QuantScheme,
}

impl TensorMetadata for AnyaccelQTensor {
    type Device = AnyaccelDevice;

    fn dtype(&self) -> DType {
        DType::QFloat(self.scheme)
    }

    fn shape(&self) -> Shape {
        self.values.shape()
    }

    fn rank(&self) -> usize {
        self.values.rank()
    }

    fn device(&self) -> AnyaccelDevice {
        self.values.device
    }

    fn can_mut(&self) -> bool {
        false
    }
}

impl QTensorOps<Self> for Anyaccel {
    fn q_from_data(_data: TensorData, _device: &Device<Self>) -> QuantizedTensor<Self> {
        unsupported("q_from_data", WHY)
    }

    fn quantize(
        _tensor: FloatTensor<Self>,
        _scheme: &QuantScheme,
        _qparams: QuantizationParametersPrimitive<Self>,
    ) -> QuantizedTensor<Self> {
        unsupported("quantize", WHY)
    }

    fn dequantize(_tensor: QuantizedTensor<Self>, _dtype: FloatDType) -> FloatTensor<Self> {
        unsupported("dequantize", WHY)
    }

    fn q_to_device(
        _tensor: QuantizedTensor<Self>,
        _device: &Device<Self>,
    ) -> QuantizedTensor<Self> {
        unsupported("q_to_device", WHY)
    }

    fn q_reshape(_tensor: QuantizedTensor<Self>, _shape: Shape) -> QuantizedTensor<Self> {
        unsupported("q_reshape", WHY)
    }

    async fn q_into_data(_tensor: QuantizedTensor<Self>) -> Result<TensorData, ExecutionError> {
        unsupported("q_into_data", WHY)
    }

    fn q_swap_dims(
        _tensor: QuantizedTensor<Self>,
        _dim1: usize,
        _dim2: usize,
    ) -> QuantizedTensor<Self> {
        unsupported("q_swap_dims", WHY)
    }

    fn q_permute(_tensor: QuantizedTensor<Self>, _axes: &[usize]) -> QuantizedTensor<Self> {
        unsupported("q_permute", WHY)
    }

    fn q_flip(_tensor: QuantizedTensor<Self>, _axes: &[usize]) -> QuantizedTensor<Self> {
        unsupported("q_flip", WHY)
    }
}
